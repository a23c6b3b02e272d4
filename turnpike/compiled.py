"""Hot SX functions as compiled C, built once per machine and kept in a disk cache.

CasADi evaluates SX functions in a virtual machine, several nanoseconds per elementary
operation. The stage derivatives of :mod:`turnpike.reduced` are evaluated for every sample and
every stage at every iteration, so for large ensembles their C code, compiled with the
system's C compiler, pays for its compile time. The shared library is cached under
``$TURNPIKE_CACHE`` (default ``~/.cache/turnpike``), named by a hash of the source, the compiler
command and the machine (processor flags, C library), so the same function is compiled once per
machine; files are written under a temporary name and moved into place, so concurrent solves never
load half a library. A compilation that fails or runs past :data:`COMPILE_SECONDS` is remembered (a
``.failed`` file; delete the cache to try again); on a time-out the compiler's whole process group is
killed. Functions over :data:`~turnpike.codegen.MAX_INSTRUCTIONS` instructions are never compiled. A
library's modification time records its last use; whenever a new one is compiled, the cache's files
unused for :data:`UNUSED_DAYS` days are deleted (:func:`prune_cache`), so the cache keeps what is in
use and does not grow with every problem ever solved.

Three things are compiled:

* :func:`compiled`: one SX function, loaded back as a CasADi ``external`` (and then ``map``-ped);
  :func:`compiling` does it in the background, while the caller builds something else.
* :func:`lanes_map`: one SX function evaluated over many items (sample-stages) ``LANES`` at a time,
  an output optionally summed over groups of items (the reduced Hessian's stage derivatives).
* :func:`ensemble_gradient`: the reduced objective ``J`` of an ensemble and its gradient by the
  discrete adjoint, all samples and stages in one C call (a short loop written here around the stage
  functions, which :mod:`turnpike.codegen` writes for ``LANES`` = 8 samples at a time, 4 for large
  functions (:func:`lanes_library`), so that the compiler vectorises them; the forward pass keeps the values
  of the stage's tanh and exp, and the backward pass differentiates the stage from them without evaluating
  it again). It is compiled for this processor (``-march=native``;
  the cache name includes the processor's flags) with glibc's vector math library libmvec for
  ``tanh``, ``exp``, ..., each left out in turn if the compiler or the C library cannot. The number of
  samples and of stages are arguments of the call, so one library serves every N, steps and T of a
  problem. The blocks of samples are split into contiguous parts run on :func:`threads` POSIX threads
  (``$TURNPIKE_THREADS``, else ``$OMP_NUM_THREADS``, else every CPU the process may use; sweep workers
  use one); the parts' sums are added in order.

Nothing here is required: without a C compiler (or if compiling fails, or with the
environment variable ``TURNPIKE_COMPILE=0``) each returns None and the caller keeps the CasADi
functions.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import casadi as ca
import numpy as np

from .codegen import MAX_INSTRUCTIONS, VECTOR_MATH, LaneFunction, lanes_function, symbolic_key

__all__ = ["COMPILE_SECONDS", "LANES", "UNUSED_DAYS", "adjoint_by_values", "cache_dir", "compiled", "compiler",
           "ensemble_gradient", "compiling", "lanes_library", "lanes_map", "prune_cache", "threads"]

# -fno-math-errno, -fno-trapping-math: math functions need not set errno and operations need not raise
# floating-point exceptions (nothing reads either), so the compiler may inline and vectorise them (floor,
# ceil, ...); the values are the same. -fopenmp-simd: the loops marked "omp simd" are vectorised.
_FLAGS = ("-O2", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd", "-fPIC", "-shared", "-pthread")
LANES = 8  # samples evaluated together by the compiled ensemble gradient (turnpike.codegen)
_ARITY = {name: 2 if name in ("pow", "atan2", "hypot") else 1 for name in VECTOR_MATH}


def compiler() -> str | None:
    """The C compiler used (``$CC``, else ``cc`` or ``gcc`` on the PATH), or None."""
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return name
    return None


def cache_dir() -> Path:
    """Where compiled functions are kept: ``$TURNPIKE_CACHE`` or ``~/.cache/turnpike``."""
    return Path(os.environ.get("TURNPIKE_CACHE", Path.home() / ".cache" / "turnpike"))


UNUSED_DAYS = 30  # cached files not used for this many days are deleted when a library is compiled
# What this module writes into the cache: NAME_DIGEST.so, NAME_DIGEST.failed, NAME_DIGEST.PID.tmp.
_CACHED = re.compile(r".+_[0-9a-f]{20}(\.so|\.failed|\.\d+\.tmp)")


def prune_cache(days: float = UNUSED_DAYS, directory: Path | None = None) -> list[Path]:
    """Delete the files this module wrote into ``directory`` (default :func:`cache_dir`) that have
    not been used for ``days`` days (modification time, which a cache hit renews); returns them.

    Other files are never touched. A process that has loaded a library keeps it after its file is
    deleted (POSIX unlink), and a later solve compiles it again.
    """
    directory = cache_dir() if directory is None else Path(directory)
    oldest = time.time() - days * 86400.0
    removed = []
    for path in directory.glob("*_*"):
        try:
            if _CACHED.fullmatch(path.name) and path.stat().st_mtime < oldest:
                path.unlink()
                removed.append(path)
        except OSError:  # gone already (another process pruned it), or not ours to delete
            pass
    return removed


@functools.cache
def _machine() -> str:
    """What a compiled library depends on besides its source and command: the processor (its
    ``/proc/cpuinfo`` flags where readable) and the C library version."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return " ".join((platform.machine(), *platform.libc_ver(), flags))


_CASADI_SOURCE = 'ca.CodeGenerator("source.c", {"with_header": False})'  # part of the cache key of its code


def _casadi_source(functions: list[ca.Function]) -> str:
    """The C code of ``functions`` by CasADi's code generator (:data:`_CASADI_SOURCE`)."""
    with tempfile.TemporaryDirectory() as tmp:
        gen = ca.CodeGenerator("source.c", {"with_header": False})
        for fn in functions:
            gen.add(fn)
        return Path(gen.generate(tmp + os.sep)).read_text()


def _shared_library(name: str, key: str, source: Callable[[], str], flags: tuple[str, ...] = ()) -> Path | None:
    """``source()`` compiled with ``flags`` (after :data:`_FLAGS`) into a cached shared library, or None.

    The cache is keyed by ``key`` (what determines the source: the symbolic functions, see
    :func:`~turnpike.codegen.symbolic_key`), the compiler command and the machine: a cached library is found
    without writing its source."""
    compilation = _Compilation(name, key, source, flags)
    try:
        return compilation.result()
    except BaseException:  # e.g. a signal's exception raised as result() is entered
        compilation.cancel()
        raise


class _Compilation:
    """A shared library being compiled (:func:`_shared_library`): the source is written and the compiler started
    at construction, :meth:`result` waits for it (the library, or None), :meth:`cancel` kills it. A library found
    in the cache (or a failure remembered there) is the result at once."""

    def __init__(self, name: str, key: str, source: Callable[[], str], flags: tuple[str, ...] = ()):
        self.target = self.process = self.tmp = None
        cc = compiler()
        if cc is None or os.environ.get("TURNPIKE_COMPILE", "1") == "0":
            return
        command = (cc, *_FLAGS, *flags)
        digest = hashlib.sha256((key + " ".join(command) + _machine()).encode()).hexdigest()[:20]
        target = cache_dir() / f"{name}_{digest}.so"
        self.failed = target.with_suffix(".failed")
        if target.exists():
            try:
                os.utime(target)  # its last use, for prune_cache
            except OSError:
                pass
            self.target = target
            return
        if self.failed.exists():
            if self.failed.read_text() == _TIMED_OUT:
                raise CompileTimeout(f"compiling {name} ran past {COMPILE_SECONDS} s (recorded in {self.failed})")
            return
        self.name, self.tmp = name, tempfile.TemporaryDirectory()
        path = Path(self.tmp.name) / f"{name}.c"
        path.write_text(source())
        self.partial, self.final = target.with_suffix(f".{os.getpid()}.tmp"), target
        self.started = time.monotonic()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # In a session of its own: cc runs cc1, as and ld as children, which killing cc alone would leave.
            with _signals_deferred():  # a signal's exception raised inside Popen would leave a compiler unkilled
                self.process = subprocess.Popen([cc, *_FLAGS, str(path), "-o", str(self.partial), *flags],
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                start_new_session=True)
        except OSError:
            self.tmp.cleanup()
        except BaseException:  # a signal's exception, raised as the signals are released
            self.cancel()
            raise

    def result(self) -> Path | None:
        """The library, once compiled (None if that failed). Raises :class:`CompileTimeout` after
        :data:`COMPILE_SECONDS` from the start (the compiler's whole process group is then killed); Ctrl-C while
        it waits kills it too, and is raised."""
        if self.process is None:
            return self.target
        process, self.process = self.process, None
        try:
            try:
                status = process.wait(timeout=max(0.0, COMPILE_SECONDS - (time.monotonic() - self.started)))
            except BaseException as exc:  # the time-out, or Ctrl-C (its own session does not get the SIGINT)
                _kill(process)
                if not isinstance(exc, subprocess.TimeoutExpired):
                    self.partial.unlink(missing_ok=True)
                    raise
                status = -1
            if status != 0:  # a failure or a time-out: not tried again (delete the cache to retry)
                self.failed.write_text(_TIMED_OUT if status == -1 else "")
                self.partial.unlink(missing_ok=True)
                if status == -1:
                    raise CompileTimeout(f"compiling {self.name} ran past {COMPILE_SECONDS} s")
                return None
            os.replace(self.partial, self.final)
        except OSError:
            return None
        finally:
            self.tmp.cleanup()
        self.target = self.final
        prune_cache()
        return self.target

    def cancel(self) -> None:
        """Kill the compiler if it still runs (nothing is cached: a later request compiles again)."""
        if self.process is not None:
            process, self.process = self.process, None
            _kill(process)
            self.partial.unlink(missing_ok=True)
            self.tmp.cleanup()


@contextmanager
def _signals_deferred():
    """Within (in the main thread, where Python runs signal handlers): SIGINT and SIGTERM are noted, not handled;
    on leaving, the handlers are put back and each noted signal is raised again, so that its handler runs then."""
    noted, previous = [], {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) is not None:  # None: a handler not set from Python, left alone
                previous[signum] = signal.signal(signum, lambda number, _frame: noted.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in noted:
            signal.raise_signal(signum)


def _kill(process: subprocess.Popen) -> None:
    """Kill a compiler's process group and reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


#: Seconds a compilation may take; then the compiler's whole process group is killed.
COMPILE_SECONDS = 300
_TIMED_OUT = "timed out"  # the content of the .failed file of a compilation killed after COMPILE_SECONDS


class CompileTimeout(Exception):
    """A compilation ran past :data:`COMPILE_SECONDS` (now, or in an earlier run: recorded in the cache).
    The callers give up on the function altogether instead of trying its other build variants, each of
    which would take as long."""


def compiled(fn: ca.Function) -> ca.Function | None:
    """``fn`` (an SX function) as a compiled shared library, or None when that is not possible (no
    compiler, a failed compilation, or more than :data:`~turnpike.codegen.MAX_INSTRUCTIONS` instructions)."""
    with compiling(fn) as result:
        return result()


@contextmanager
def compiling(fn: ca.Function):
    """Within: ``fn`` compiled in the background, while the block builds other things (the compiler is a
    process of its own; CasADi is used only here, before it starts). Yields a function that waits for the
    compiler and returns what :func:`compiled` returns; the block's end waits for it too, and leaving the
    block by an exception (Ctrl-C included) kills it."""
    compilation = None

    @functools.cache
    def result() -> ca.Function | None:
        try:
            target = None if compilation is None else compilation.result()
        except CompileTimeout:
            return None
        try:
            return None if target is None else ca.external(fn.name(), str(target))
        except RuntimeError:
            return None

    try:
        if fn.n_instructions() <= MAX_INSTRUCTIONS:
            try:
                compilation = _Compilation(f"turnpike_{fn.name()}", f"{_CASADI_SOURCE}\n{symbolic_key(fn)}",
                                           lambda: _casadi_source([fn]))
            except CompileTimeout:
                pass
        yield result
        result()
    except BaseException:
        if compilation is not None:
            compilation.cancel()
        raise


# The loop around the stage functions, written by turnpike.codegen for TP_LANES samples at a time (arrays
# nonzero-major, lanes contiguous): tp_step (x, u, y, h) -> (x_next, q, r) forward, keeping the states and the
# TP_NR values r of the stage's tanh and exp, and tp_step_vjp (x, u, y, h, p, r) -> (∇_x ℓ, ∇_u ℓ),
# ℓ = q + p·x_next, backward (see _reverse_mode); tp_terminal (x, y) -> (φ, ∇φ). u and h are the same for every
# lane. Arrays passed in are row-major numpy: x0 (N, nx), u (n, nu), y (N, ny).
_GRADIENT_LOOP = r"""
#define TP_KEPT (TP_NX + TP_NR) /* kept per stage and lane: the state, the values of its tanh and exp */

/* The chunks [first, last) of one thread (chunk c: the blocks of TP_LANES samples [c chunk, (c + 1) chunk) of
   the `blocks`), and the partial sums of every chunk, J[c] and grad + c n nu. */
typedef struct {
  long long first, last, chunk, blocks, n, N;
  const double *x0, *u, *y;
  double h, *J, *grad;
  int failed;
} tp_task;

/* Sum over the task's samples of sum_k q_ik + phi_i and of its gradient in u, by the discrete adjoint,
   TP_LANES samples at a time: forward over the stages keeping TP_KEPT numbers per stage and lane, then
   backward. The lanes of the last block past sample N - 1 repeat it and are left out of the sums. */
static void* tp_run(void* data) {
  tp_task* t = (tp_task*) data;
  const long long nx = TP_NX, nu = TP_NU, ny = TP_NY, L = TP_LANES, n = t->n;
  double* memory = malloc(sizeof(double) * L * ((n + 1) * TP_KEPT + 4 * nx + ny + nu + 2));
  t->failed = !memory;
  if (!memory) return NULL;
  double *kept = memory, *x = kept + (n + 1) * TP_KEPT * L, *x_next = x + nx * L, *p = x_next + nx * L;
  double *p_prev = p + nx * L, *y = p_prev + nx * L, *g_u = y + ny * L, *q = g_u + nu * L, *phi = q + L;
  double h = t->h;
  for (long long c = t->first; c < t->last; ++c) {
  double total = 0, *grad = t->grad + c * n * nu;
  memset(grad, 0, sizeof(double) * n * nu);
  const long long b_end = (c + 1) * t->chunk < t->blocks ? (c + 1) * t->chunk : t->blocks;
  for (long long b = c * t->chunk; b < b_end; ++b) {
    const long long first = b * L, valid = t->N - first < L ? t->N - first : L;
    for (long long l = 0; l < L; ++l) {
      const long long i = first + (l < valid ? l : valid - 1);
      for (long long j = 0; j < nx; ++j) x[j * L + l] = t->x0[i * nx + j];
      for (long long j = 0; j < ny; ++j) y[j * L + l] = t->y[i * ny + j];
    }
    for (long long k = 0; k < n; ++k) {
      const double* in[] = {x, t->u + k * nu, y, &h};
      double* out[] = {x_next, q, kept + (k * TP_KEPT + nx) * L};
      memcpy(kept + k * TP_KEPT * L, x, sizeof(double) * nx * L);
      tp_step(in, out);
      memcpy(x, x_next, sizeof(double) * nx * L);
      for (long long l = 0; l < valid; ++l) total += q[l];
    }
    {
      const double* in[] = {x, y};
      double* out[] = {phi, p};
      tp_terminal(in, out);
    }
    for (long long l = 0; l < valid; ++l) total += phi[l];
    for (long long k = n - 1; k >= 0; --k) {
      const double* in[] = {kept + k * TP_KEPT * L, t->u + k * nu, y, &h, p, kept + (k * TP_KEPT + nx) * L};
      double* out[] = {p_prev, g_u};
      tp_step_vjp(in, out);
      for (long long j = 0; j < nu; ++j) {
        double s = 0;
        for (long long l = 0; l < valid; ++l) s += g_u[j * L + l];
        grad[k * nu + j] += s;
      }
      double* swap = p; p = p_prev; p_prev = swap;
    }
  }
  t->J[c] = total;
  }
  free(memory);
  return NULL;
}

/* J = (1/N) sum_i (sum_k q_ik + phi_i) and its gradient in u (n, nu). The blocks of TP_LANES samples are
   grouped in chunks (TP_CHUNK_BLOCKS blocks, more when there would be over TP_MAX_CHUNKS chunks), summed
   chunk by chunk, then the chunks in order: the numbers do not depend on `threads`, which split the chunks
   into contiguous parts. Returns 0, or 1 if memory could not be had. */
int tp_ensemble_gradient(long long N, long long n, const double* x0, const double* u, const double* y, double h,
                         long long threads, double* J, double* grad) {
  const long long nu = TP_NU, blocks = (N + TP_LANES - 1) / TP_LANES;
  long long chunk = TP_CHUNK_BLOCKS, most = TP_PARTIAL_NUMBERS / (n * nu + 1);  /* chunks whose sums fit */
  most = most < 1 ? 1 : (most > TP_MAX_CHUNKS ? TP_MAX_CHUNKS : most);
  if (blocks > chunk * most) chunk = (blocks + most - 1) / most;
  const long long chunks = blocks > 0 ? (blocks + chunk - 1) / chunk : 0;
  threads = threads < 1 ? 1 : (threads > chunks ? (chunks > 0 ? chunks : 1) : threads);
  tp_task* tasks = calloc(threads, sizeof(tp_task));
  double* partial = malloc(sizeof(double) * (chunks * (n * nu + 1) + 1));
  if (!tasks || !partial) {
    free(tasks); free(partial);
    return 1;
  }
  for (long long t = 0; t < threads; ++t) {
    tp_task task = {chunks * t / threads, chunks * (t + 1) / threads, chunk, blocks, n, N, x0, u, y, h,
                    partial + chunks * n * nu, partial, 0};
    tasks[t] = task;
  }
  tp_parallel(tp_run, tasks, threads, sizeof(tp_task));
  int failed = 0;
  for (long long t = 0; t < threads; ++t) failed = failed || tasks[t].failed;
  double total = 0;
  memset(grad, 0, sizeof(double) * n * nu);
  for (long long c = 0; c < chunks && !failed; ++c) {
    total += partial[chunks * n * nu + c];
    for (long long j = 0; j < n * nu; ++j) grad[j] += partial[c * n * nu + j];
  }
  *J = total / N;
  for (long long j = 0; j < n * nu; ++j) grad[j] /= N;
  free(tasks); free(partial);
  return failed;
}
"""


# The loop of lanes_map: items [first, last) in blocks of TP_LANES, gathered from (nnz, items) column-major
# arrays into lanes (nonzero-major, lanes contiguous), evaluated by tp_fn, scattered back; an output marked
# in tp_summed is added up over each group of G consecutive items instead. A block past the last item
# repeats it (the extra lanes are not written back).
_MAP_LOOP = r"""
typedef struct {
  long long first, last, G;
  const double* const* in;
  double* const* out;
  int failed;
} tp_map_task;

static void* tp_map_run(void* data) {
  tp_map_task* t = (tp_map_task*) data;
  const long long L = TP_LANES;
  long long size = 0;
  for (int j = 0; j < TP_N_IN; ++j) size += tp_shared[j] ? 0 : tp_nnz_in[j];
  for (int j = 0; j < TP_N_OUT; ++j) size += tp_nnz_out[j];
  double* memory = malloc(sizeof(double) * (L * size + 1));
  t->failed = !memory;
  if (!memory) return NULL;
  const double* in[TP_N_IN + 1];
  double* out[TP_N_OUT + 1];
  double* next = memory;
  for (int j = 0; j < TP_N_IN; ++j) {
    in[j] = tp_shared[j] ? t->in[j] : next;
    next += tp_shared[j] ? 0 : tp_nnz_in[j] * L;
  }
  for (int j = 0; j < TP_N_OUT; ++j) {
    out[j] = next;
    next += tp_nnz_out[j] * L;
  }
  for (long long first = t->first; first < t->last; first += L) {
    const long long valid = t->last - first < L ? t->last - first : L;
    for (int j = 0; j < TP_N_IN; ++j) {
      if (tp_shared[j]) continue;
      const long long nnz = tp_nnz_in[j];
      double* lanes = (double*) in[j];
      for (long long l = 0; l < L; ++l) {
        const double* item = t->in[j] + (first + (l < valid ? l : valid - 1)) * nnz;
        for (long long k = 0; k < nnz; ++k) lanes[k * L + l] = item[k];
      }
    }
    tp_fn(in, out);
    for (int j = 0; j < TP_N_OUT; ++j) {
      const long long nnz = tp_nnz_out[j];
      for (long long l = 0; l < valid; ++l) {
        const long long i = first + l;
        if (tp_summed[j]) {
          double* sum = t->out[j] + (i / t->G) * nnz;
          for (long long k = 0; k < nnz; ++k) sum[k] += out[j][k * L + l];
        } else {
          double* item = t->out[j] + i * nnz;
          for (long long k = 0; k < nnz; ++k) item[k] = out[j][k * L + l];
        }
      }
    }
  }
  free(memory);
  return NULL;
}

/* tp_fn on items [0, M), the groups of G items split into `threads` contiguous parts (so no two threads
   add to the same sum). Summed outputs must be zero on entry. Returns 0, or 1 if memory could not be had. */
int tp_map(long long M, long long G, const double* const* in, double* const* out, long long threads) {
  const long long groups = M / G;
  threads = threads < 1 ? 1 : (threads > groups ? (groups > 0 ? groups : 1) : threads);
  tp_map_task* tasks = calloc(threads, sizeof(tp_map_task));
  if (!tasks) return 1;
  for (long long t = 0; t < threads; ++t) {
    tp_map_task task = {groups * t / threads * G, groups * (t + 1) / threads * G, G, in, out, 0};
    tasks[t] = task;
  }
  tp_parallel(tp_map_run, tasks, threads, sizeof(tp_map_task));
  int failed = 0;
  for (long long t = 0; t < threads; ++t) failed = failed || tasks[t].failed;
  free(tasks);
  return failed;
}
"""


def lanes_map(fn: ca.Function, shared: set[int] = frozenset(), summed: set[int] = frozenset()):
    """``fn`` (an SX function) mapped over items, compiled as lane code, or None when that is not possible.

    The call ``evaluate(M, G, *inputs)`` returns ``fn``'s outputs for items ``0, …, M-1`` as arrays
    ``(nnz_out, M)`` (CasADi's ``fn.map(M)`` layout: column i is item i), except that an output in
    ``summed`` is added up over each group of ``G`` consecutive items (``(nnz_out, M / G)``, like
    ``map``'s ``reduce_out``). An input is ``(nnz_in, M)`` (broadcast from ``(nnz_in, 1)``), or a scalar
    for an input in ``shared``, which is the same for every item. Items are evaluated ``LANES`` at a
    time by :func:`turnpike.codegen.lanes_function`'s code, the groups split over :func:`threads` threads.
    """
    if fn.n_in() == 0 or any(fn.nnz_in(j) != 1 for j in shared):
        return None
    written = lanes_function(fn, "tp_fn", shared=set(shared))
    if written is None:
        return None
    array = "static const {} tp_{}[] = {{{}}};\n".format
    header = (f"#define TP_N_IN {fn.n_in()}\n#define TP_N_OUT {fn.n_out()}\n"
              + array("long long", "nnz_in", ", ".join(str(fn.nnz_in(j)) for j in range(fn.n_in())))
              + array("long long", "nnz_out", ", ".join(str(fn.nnz_out(j)) for j in range(fn.n_out())))
              + array("int", "shared", ", ".join(str(int(j in shared)) for j in range(fn.n_in())))
              + array("int", "summed", ", ".join(str(int(j in summed)) for j in range(fn.n_out()))))
    built = lanes_library(f"turnpike_map_{fn.name()}", [written], header, _MAP_LOOP)
    if built is None:
        return None
    try:
        loop = ctypes.CDLL(str(built[0])).tp_map
    except (OSError, AttributeError):
        return None
    loop.argtypes = [ctypes.c_longlong, ctypes.c_longlong, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_longlong]
    loop.restype = ctypes.c_int

    def evaluate(M: int, G: int, *inputs) -> list[np.ndarray]:
        if M % G:
            raise ValueError(f"the {M} items are not whole groups of G = {G}")
        flat = [np.ascontiguousarray(np.broadcast_to(np.asarray(a, dtype=float), (fn.nnz_in(j), M)).T)
                if j not in shared else np.array([float(a)]) for j, a in enumerate(inputs)]
        out = [np.zeros((M // G if j in summed else M, fn.nnz_out(j))) for j in range(fn.n_out())]
        pointers = (ctypes.c_void_p * len(flat))(*(a.ctypes.data for a in flat))
        results = (ctypes.c_void_p * len(out))(*(o.ctypes.data for o in out))
        if loop(M, G, pointers, results, threads()) != 0:
            raise RuntimeError(f"the compiled map of {fn.name()} could not allocate its work memory")
        return [o.T for o in out]

    evaluate.build = built[1]
    return evaluate


def threads() -> int:
    """Threads of the compiled ensemble loop: ``$TURNPIKE_THREADS``, else ``$OMP_NUM_THREADS``, else the
    CPUs this process may run on."""
    for name in ("TURNPIKE_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# In every lane library: the tasks of a loop run on threads.
_PARALLEL = r"""
/* run(task t) for the n tasks of `size` bytes at `tasks`: task 0 here, the others on threads of their own
   (here, one after the other, if a thread cannot be had); returns when all have finished. */
static void tp_parallel(void* (*run)(void*), void* tasks, long long n, size_t size) {
  char* task = (char*) tasks;
  pthread_t* ids = calloc(n, sizeof(pthread_t));
  int* started = calloc(n, sizeof(int));
  for (long long t = 1; t < n && ids && started; ++t)
    started[t] = pthread_create(&ids[t], NULL, run, task + t * size) == 0;
  run(task);
  for (long long t = 1; t < n; ++t) {
    if (started && started[t]) pthread_join(ids[t], NULL); else run(task + t * size);
  }
  free(ids);
  free(started);
}
"""


#: The ensemble loops sum their samples in chunks of this many blocks of LANES samples (more blocks per chunk
#: when there would be over MAX_CHUNKS chunks, or when the chunks' partial sums, steps·nu numbers each, would be
#: over PARTIAL_NUMBERS numbers), then the chunks in order: the threads split the chunks, so the numbers do not
#: depend on the number of threads (L-BFGS-B's thousands of steps amplify round-off differences into other
#: local minima: a multistart's table must not depend on where a start ran).
CHUNK_BLOCKS, MAX_CHUNKS, PARTIAL_NUMBERS = 4, 64, 4_000_000


#: GCC vectorises a loop with at most ``loop-max-datarefs-for-datadeps`` (default 1000) memory references and
#: compiles a larger one as scalar code, transcendentals included. The lane loop of a larger function (more
#: inputs read and outputs written: the stage reverse mode of the bottleneck field from width about 100, its
#: forward-over-reverse mode from width about 40) is compiled with that limit lifted, 4 lanes and ``-O1
#: -ftree-vectorize``. Measured on the stage reverse mode of width 200 (16 RK4 steps, N = 1000, one core): a
#: gradient in 0.58 s as scalar code (8 lanes, -O2, compiled in 29 s), 0.17 s vectorised with 4 lanes and -O1
#: (compiled in 27 s), 0.17 s with 4 lanes and -O2 (32 s), 0.16-0.20 s with 8 lanes and -O2 (51 s). The count is
#: of every input read and output written (:attr:`~turnpike.codegen.LaneFunction.references`): since the shared
#: inputs are read before the loop, it measures the function's size rather than GCC's count (at width 100 the
#: gradient's loop holds fewer than 1000; with 8 lanes and -O2 it compiled in 11.9 s against 7.4 s, as fast).
LARGE_LOOP = 1000
_LARGE_FLAGS = ("-O1", "-ftree-vectorize", "--param", "loop-max-datarefs-for-datadeps=1000000")
#: A large lane loop with more memory references than this (:attr:`~turnpike.codegen.LaneFunction.loop_references`:
#: the shared inputs are read before it) is compiled as scalar code (-O1, 4 lanes): the vectoriser's dependence
#: analysis takes memory that grows like the square of the references. Measured with gcc 12 on the second-order
#: substep of the bottleneck of width 200 (one function, -O1, vectorised): 5653 references (the controls read in
#: the loop) took 16.7 s and 1.30 GB, 2849 (read before it) 20.6 s and 0.53 GB.
MAX_VECTOR_REFERENCES = 4000


def lanes_library(name: str, written: list[LaneFunction], header: str = "",
                  code: str = "") -> tuple[Path, str] | None:
    """Lane functions (:func:`turnpike.codegen.lanes_function`'s results) and ``code`` after them,
    compiled with ``TP_LANES`` lanes and ``header`` first: the library and how it was built
    (e.g. ``"8 lanes, -march=native -lmvec -lm"``), or None.

    ``TP_LANES`` is :data:`LANES`, or 4 with :data:`_LARGE_FLAGS` where a lane function has more than
    :data:`LARGE_LOOP` references (first tried with those flags, then without), with ``-O1`` alone (scalar code)
    where a lane loop has more than :data:`MAX_VECTOR_REFERENCES`. Tried in turn until
    one compiles: for this processor (``-march=native``) with libmvec's vector versions of the
    transcendentals called (where the C library has them), then without libmvec, then each again for the
    generic processor.
    """
    with lanes_compiling(name, written, header, code) as result:
        return result()


@contextmanager
def lanes_compiling(name: str, written: list[LaneFunction], header: str = "", code: str = ""):
    """Within: :func:`lanes_library`'s first attempt compiled in the background, while the block does other
    work. Yields a function that waits for it and returns what :func:`lanes_library` returns (the later attempts,
    where the first fails, are compiled then); the block's end waits too, and leaving it by an exception kills
    the compiler (as :func:`compiling`)."""
    large = max(w.references for w in written) > LARGE_LOOP
    lanes = 4 if large else LANES
    calls = set().union(*(w.calls for w in written))
    header = (f"#define TP_LANES {lanes}\n#define TP_CHUNK_BLOCKS {CHUNK_BLOCKS}\n#define TP_MAX_CHUNKS {MAX_CHUNKS}\n"
              f"#define TP_PARTIAL_NUMBERS {PARTIAL_NUMBERS}LL\n{header}"
              + "".join(f"#include <{h}.h>\n" for h in ("math", "pthread", "stdlib", "string")) + _PARALLEL)
    key = "\n".join([header, code, *(w.key for w in written)])
    # With these declarations GCC calls libmvec's _ZGV<isa>N<lanes>v_<c> on vectors of lanes. sin and cos are
    # made non-builtin (and declared const), else GCC merges them into a sincos with no vector version.
    vector_math = "".join(f"#pragma omp declare simd notinbranch\ndouble {c}({', '.join(['double'] * _ARITY[c])})"
                          " __attribute__((const));\n" for c in sorted(calls))
    attempts = [("", ("-lm",))]
    if vector_math:
        attempts.insert(0, (vector_math, ("-fno-builtin-sin", "-fno-builtin-cos", "-lmvec", "-lm")))
    attempts = [(decl, ("-march=native", *libs)) for decl, libs in attempts] + attempts
    if large:
        scalar = max(w.loop_references for w in written) > MAX_VECTOR_REFERENCES
        attempts = [(decl, (*(("-O1",) if scalar else _LARGE_FLAGS), *flags)) for decl, flags in attempts] + attempts

    def start(declarations: str, flags: tuple[str, ...]) -> _Compilation:
        return _Compilation(name, key + declarations, lambda: header + declarations + "".join(
            w.source for w in written) + code, flags)

    first = None

    @functools.cache
    def result() -> tuple[Path, str] | None:
        try:
            for i, (declarations, flags) in enumerate(attempts):
                compilation = first if i == 0 else start(declarations, flags)
                try:
                    target = compilation.result()
                except BaseException:
                    compilation.cancel()
                    raise
                if target is not None:
                    return target, f"{lanes} lanes, {' '.join(flags)}"
        except CompileTimeout:
            return None
        return None

    try:
        try:
            first = start(*attempts[0])
        except CompileTimeout:
            result = functools.cache(lambda: None)
        yield result
        result()
    except BaseException:
        if first is not None:
            first.cancel()
        raise


# Elementwise operations whose derivative is a function of their value (tanh' = 1 - tanh², exp' = exp): the
# forward pass of the gradient and Hessian-vector loops keeps their values for the backward pass.
_DERIVATIVE_BY_VALUE = {ca.OP_TANH: lambda r: 1 - r * r, ca.OP_EXP: lambda r: r}


@dataclass(frozen=True)
class AdjointByValues:
    """A stage ``(x, u, ...) -> (x_next, q)`` and the gradient of ``ℓ = q + p·x_next`` in ``(x, u)`` as a function
    of the values ``r`` of its tanh and exp operations (:func:`adjoint_by_values`). SX expressions in
    ``inputs`` (the stage's), ``p`` and ``r``:

    * ``x_next``, ``q``: the stage (in ``inputs``);
    * ``values``: what ``r`` stands for, the values of the m tanh and exp operations in the order the stage
      evaluates them (in ``inputs``);
    * ``g_x``, ``g_u``: ``∇_x ℓ`` and ``∇_u ℓ`` in ``inputs``, ``p`` and ``r``, with no tanh or exp: equal to
      CasADi's where ``r = values``.
    """

    inputs: list
    x_next: ca.SX
    q: ca.SX
    r: ca.SX
    values: ca.SX
    p: ca.SX
    g_x: ca.SX
    g_u: ca.SX


def adjoint_by_values(step: ca.Function, keep: bool = True) -> AdjointByValues:
    """``step`` ``(x, u, ...) -> (x_next, q)`` (SX) and its adjoint in the values of its tanh and exp operations
    (none with ``keep=False``: then ``g_x``, ``g_u`` are CasADi's reverse mode of the stage).

    ``step``'s instructions replayed with a symbol ``r_j`` in place of the j-th such operation ``σ_j(z_j)``
    write the step as ``(x_next, q) = G(x, u, r)`` with ``z_j = Z_j(x, u, r_1..r_{j-1})`` and ``r_j = σ_j(z_j)``.
    Its adjoint: with ``L = q + p·x_next + Σ_j w_j z_j``, ``w_j = σ_j'(z_j) ∂L/∂r_j``, and ``∇_{(x,u)} ℓ =
    ∂L/∂(x, u)``; ``∂L/∂r_j`` involves only the ``w_k`` with ``k > j`` (``z_k`` depends on ``r_j`` for ``k > j``
    only), so the w's are substituted last first. As ``σ_j'`` is a function of ``r_j``, the adjoint evaluates no
    transcendental, nor the arithmetic that only feeds them (``W1 x`` of a layer), where CasADi's reverse mode of
    ``step`` evaluates the whole step again. Other operations (sin, log, ...) are differentiated as CasADi does.
    ``python benchmarks/bench_gradient.py`` times both in the gradient loop.
    """
    by_value = _DERIVATIVE_BY_VALUE if keep else {}
    inputs = step.sx_in()
    outputs = [ca.SX.zeros(step.sparsity_out(i)) for i in range(step.n_out())]
    work, r, z, ops = {}, [], [], []
    for k in range(step.n_instructions()):
        op, args, res = step.instruction_id(k), step.instruction_input(k), step.instruction_output(k)
        if op == ca.OP_INPUT:
            work[res[0]] = inputs[args[0]].nz[args[1]]
        elif op == ca.OP_OUTPUT:
            outputs[res[0]].nz[res[1]] = work[args[0]]
        elif op == ca.OP_CONST:
            work[res[0]] = ca.SX(step.instruction_constant(k))
        elif op in by_value:
            r.append(ca.SX.sym(f"r{len(r)}"))
            z.append(work[args[0]])
            ops.append(op)
            work[res[0]] = r[-1]
        elif len(args) == 2:
            work[res[0]] = ca.SX.binary(op, work[args[0]], work[args[1]])
        else:
            work[res[0]] = ca.SX.unary(op, work[args[0]])
    x, u = inputs[:2]
    x_next, q = outputs
    # The stage: the r's by their definitions, first first (r_j's involves r_1..r_{j-1} only).
    values, (x_next_value, q_value) = ca.substitute_inplace(
        r, [ca.SX.unary(op, zj) for op, zj in zip(ops, z, strict=True)], [x_next, q], False)
    p, w = ca.SX.sym("p", x.numel()), ca.SX.sym("w", len(r))
    L = q + ca.dot(p, x_next) + ca.dot(w, ca.vertcat(*z))
    g_r = ca.gradient(L, ca.vertcat(*r))
    last_first = range(len(r) - 1, -1, -1)
    _, (g_x, g_u) = ca.substitute_inplace([w[j] for j in last_first], [
        g_r[j] * by_value[ops[j]](r[j]) for j in last_first], [ca.gradient(L, x), ca.gradient(L, u)], False)
    return AdjointByValues(inputs, x_next_value, q_value, ca.vertcat(*r), ca.vertcat(*values), p, g_x, g_u)


def _reverse_mode(step: ca.Function, keep: bool = True) -> tuple[ca.Function, ca.Function]:
    """The gradient loop's stage functions (:func:`adjoint_by_values`), the values r passed from the first to the
    second: ``tp_step (x, u, y, h) -> (x_next, q, r)`` and ``tp_step_vjp (x, u, y, h, p, r) -> (∇_x ℓ, ∇_u ℓ)``."""
    a = adjoint_by_values(step, keep)
    forward = ca.Function("tp_step", a.inputs, [ca.densify(e) for e in (a.x_next, a.q, a.values)])
    backward = ca.Function("tp_step_vjp", [*a.inputs, a.p, a.r], [ca.densify(a.g_x), ca.densify(a.g_u)])
    return forward, backward


def ensemble_gradient(step: ca.Function, terminal: ca.Function, keep: bool = True):
    """``(x0, u, y, h) -> (J, ∇_u J)`` for the ensemble, compiled, or None when that is not possible.

    ``step`` is one interval of one sample, ``(x, u, y, h) -> (x_next, q)`` (SX), and ``terminal``
    is ``(x, y) -> φ``. With ``x0`` (N, nx), ``u`` (steps, nu), ``y`` (N, ny) the call returns

        ``J = (1/N) Σ_i (Σ_k q_{i,k} + φ(x_{i,n}, y_i))`` and ``∇_{u_k} J = (1/N) Σ_i ∇_u ℓ_{i,k}``,

    with ``ℓ_{i,k} = q_{i,k} + p_{i,k+1}ᵀ x_{i,k+1}`` and the adjoint ``p_{i,n} = ∇φ``,
    ``p_{i,k} = ∇_x ℓ_{i,k}`` (the recursion of :mod:`turnpike.reduced`). The control costs are not
    included. The forward pass keeps the states and the values of the stage's tanh and exp operations, and the
    backward pass evaluates the stage's reverse mode from them (:func:`_reverse_mode`; with ``keep=False`` the
    states only, and the backward pass evaluates the stage again). Memory: ``nx`` plus those values per stage
    and sample of ``LANES`` samples per thread.
    """
    x, y = step.sx_in(0), step.sx_in(2)
    phi = terminal(x, y)
    terminal_fn = ca.Function("tp_terminal", [x, y], [ca.densify(phi), ca.densify(ca.gradient(phi, x))])
    stage_functions = _reverse_mode(step, keep)
    functions = [*stage_functions, terminal_fn]
    written = [lanes_function(f, f.name(), shared={1, 3} if f is not terminal_fn else set()) for f in functions]
    if any(w is None for w in written):
        return None
    sizes = "".join(f"#define TP_{k} {v}\n" for k, v in (
        ("NX", x.numel()), ("NU", step.numel_in(1)), ("NY", y.numel()), ("NR", stage_functions[0].nnz_out(2))))
    built = lanes_library("turnpike_ensemble_gradient", written, sizes, _GRADIENT_LOOP)
    if built is None:
        return None
    target, build = built
    try:
        loop = ctypes.CDLL(str(target)).tp_ensemble_gradient
    except (OSError, AttributeError):
        return None
    pointer = ctypes.c_void_p
    loop.argtypes = [ctypes.c_longlong, ctypes.c_longlong, pointer, pointer, pointer, ctypes.c_double,
                     ctypes.c_longlong, pointer, pointer]
    loop.restype = ctypes.c_int

    def gradient(x0: np.ndarray, u: np.ndarray, y: np.ndarray, h: float) -> tuple[float, np.ndarray]:
        x0, u, y = (np.ascontiguousarray(a, dtype=float) for a in (x0, u, y))
        J, grad = np.zeros(1), np.empty_like(u)
        if loop(x0.shape[0], u.shape[0], x0.ctypes.data, u.ctypes.data, y.ctypes.data, float(h), threads(),
                J.ctypes.data, grad.ctypes.data) != 0:
            raise RuntimeError("the compiled ensemble gradient could not allocate its work memory")
        return float(J[0]), grad

    gradient.build = build  # how it was compiled
    return gradient
