"""Hot SX functions as compiled C, built once per machine and kept in a disk cache.

CasADi evaluates SX functions in a virtual machine, several nanoseconds per elementary
operation. The stage derivatives of :mod:`turnpike.reduced` are evaluated for every sample and
every stage at every iteration, so for large ensembles their C code, compiled with the
system's C compiler, pays for its compile time. The shared library is cached under
``$TURNPIKE_CACHE`` (default ``~/.cache/turnpike``), named by a hash of the generated source and
the compiler command, so the same function is compiled once per machine; files are written
under a temporary name and moved into place, so concurrent solves never load half a library.

Two things are compiled:

* :func:`compiled`: one SX function, loaded back as a CasADi ``external`` (and then ``map``-ped).
* :func:`ensemble_gradient`: the reduced objective ``J`` of an ensemble and its gradient by the
  discrete adjoint, all samples and stages in one C call (a short loop written here around the
  generated stage functions; the backward pass either evaluates the stage's reverse mode or
  multiplies by the stage Jacobians kept from the forward pass, whichever an instruction count finds
  cheaper). The number of samples and of stages are arguments of the call, so
  one library serves every N, steps and T of a problem. The samples are split into contiguous
  parts run on :func:`threads` POSIX threads (``$TURNPIKE_THREADS``, else ``$OMP_NUM_THREADS``,
  else every CPU the process may use; sweep workers use one); the parts' sums are added in order.

Nothing here is required: without a C compiler (or if compiling fails, or with the
environment variable ``TURNPIKE_COMPILE=0``) both return None and the caller keeps the CasADi
functions.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import casadi as ca
import numpy as np

__all__ = ["compiled", "ensemble_gradient", "compiler", "cache_dir", "threads"]

# -fno-math-errno: math functions need not set errno (nothing reads it), so the compiler may inline them;
# the values are the same. About 10% off the ensemble gradient.
_FLAGS = ("-O2", "-fno-math-errno", "-fPIC", "-shared", "-pthread")


def compiler() -> str | None:
    """The C compiler used (``$CC``, else ``cc`` or ``gcc`` on the PATH), or None."""
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return name
    return None


def cache_dir() -> Path:
    """Where compiled functions are kept: ``$TURNPIKE_CACHE`` or ``~/.cache/turnpike``."""
    return Path(os.environ.get("TURNPIKE_CACHE", Path.home() / ".cache" / "turnpike"))


def _shared_library(name: str, functions: list[ca.Function], appended: str = "") -> Path | None:
    """The C code of ``functions`` (plus ``appended`` source) compiled into a cached shared library."""
    cc = compiler()
    if cc is None or os.environ.get("TURNPIKE_COMPILE", "1") == "0":
        return None
    with tempfile.TemporaryDirectory() as tmp:
        gen = ca.CodeGenerator(f"{name}.c", {"with_header": False})
        for fn in functions:
            gen.add(fn)
        source = Path(gen.generate(tmp + os.sep))
        source.write_text(source.read_text() + appended)
        text = source.read_bytes()
        digest = hashlib.sha256(text + " ".join((cc, *_FLAGS)).encode()).hexdigest()[:20]
        target = cache_dir() / f"{name}_{digest}.so"
        if not target.exists():
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_suffix(f".{os.getpid()}.tmp")
                subprocess.run([cc, *_FLAGS, str(source), "-o", str(partial)], check=True,
                               capture_output=True, timeout=300)
                os.replace(partial, target)
            except (OSError, subprocess.SubprocessError):
                return None
    return target


def compiled(fn: ca.Function) -> ca.Function | None:
    """``fn`` (an SX function) as a compiled shared library, or None when that is not possible."""
    target = _shared_library(f"turnpike_{fn.name()}", [fn])
    if target is None:
        return None
    try:
        return ca.external(fn.name(), str(target))
    except RuntimeError:
        return None


# The loop around the generated functions. TP_STORED 0: tp_step (x, u, y, h) -> (x_next, q) forward, keeping
# the states, and tp_step_vjp (x, u, y, h, p) -> (∇_x ℓ, ∇_u ℓ), ℓ = q + p·x_next, backward (the stage is
# evaluated again). TP_STORED 1: tp_stage (x, u, y, h) -> (x_next, q, vec ∂x_next/∂x, vec ∂x_next/∂u, ∇_x q,
# ∇_u q) forward, keeping those derivatives, and the backward pass is products with them. tp_terminal
# (x, y) -> (φ, ∇φ). Arrays are row-major numpy: x0 (N, nx), u (n, nu), y (N, ny); CasADi's are column-major.
_GRADIENT_LOOP = r"""
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define TP_MAX(a, b) ((a) > (b) ? (a) : (b))
#if TP_STORED
#define TP_FUNCTIONS {tp_stage_work, tp_terminal_work}
#define TP_KEPT (TP_NX * TP_NX + TP_NX * TP_NU + TP_NX + TP_NU) /* kept per stage: Jx, Ju, gx, gu */
#else
#define TP_FUNCTIONS {tp_step_work, tp_step_vjp_work, tp_terminal_work}
#define TP_KEPT TP_NX /* kept per stage: the state */
#endif

/* The samples [first, last) of one thread, its own work space, and its partial sums. */
typedef struct {
  casadi_int first, last, n;
  const casadi_real *x0, *u, *y;
  casadi_real h, J, *grad;
  int failed;
} tp_task;

/* Sum over the task's samples of sum_k q_ik + phi_i and of its gradient in u, by the discrete adjoint
   of each sample in turn: forward over the stages keeping TP_KEPT numbers per stage, then backward. */
static void* tp_run(void* data) {
  tp_task* t = (tp_task*) data;
  const casadi_int nx = TP_NX, nu = TP_NU, ny = TP_NY, n = t->n;
  casadi_int n_arg = 0, n_res = 0, n_iw = 0, n_w = 0, a, r, iw, w;
  int (*sizes[])(casadi_int*, casadi_int*, casadi_int*, casadi_int*) = TP_FUNCTIONS;
  for (size_t f = 0; f < sizeof(sizes) / sizeof(sizes[0]); ++f) {  /* one work space for all of them */
    sizes[f](&a, &r, &iw, &w);
    n_arg = TP_MAX(n_arg, a); n_res = TP_MAX(n_res, r); n_iw = TP_MAX(n_iw, iw); n_w = TP_MAX(n_w, w);
  }
  const casadi_real** arg = malloc(sizeof(casadi_real*) * (n_arg + 1));
  casadi_real** res = malloc(sizeof(casadi_real*) * (n_res + 1));
  casadi_int* iwork = malloc(sizeof(casadi_int) * (n_iw + 1));
  casadi_real* work = malloc(sizeof(casadi_real) * (n_w + (n + 1) * TP_KEPT + 4 * nx + nu + 1));
  int failed = !arg || !res || !iwork || !work;
  casadi_real *kept = work + n_w, *x = kept + (n + 1) * TP_KEPT, *x_next = x + nx, *p = x_next + nx;
  casadi_real *p_prev = p + nx, *g_u = p_prev + nx, q, phi, h = t->h, total = 0;
  memset(t->grad, 0, sizeof(casadi_real) * n * nu);
  for (casadi_int i = t->first; i < t->last && !failed; ++i) {
    const casadi_real* y_i = t->y + i * ny;
    memcpy(x, t->x0 + i * nx, sizeof(casadi_real) * nx);
    for (casadi_int k = 0; k < n && !failed; ++k) {
      arg[0] = x; arg[1] = t->u + k * nu; arg[2] = y_i; arg[3] = &h;
      res[0] = x_next; res[1] = &q;
#if TP_STORED
      casadi_real* d = kept + k * TP_KEPT;
      res[2] = d; res[3] = d + nx * nx; res[4] = d + nx * nx + nx * nu; res[5] = d + nx * nx + nx * nu + nx;
      failed = tp_stage(arg, res, iwork, work, 0);
#else
      memcpy(kept + k * nx, x, sizeof(casadi_real) * nx);
      failed = tp_step(arg, res, iwork, work, 0);
#endif
      memcpy(x, x_next, sizeof(casadi_real) * nx);
      total += q;
    }
    arg[0] = x; arg[1] = y_i; res[0] = &phi; res[1] = p;
    failed = failed || tp_terminal(arg, res, iwork, work, 0);
    total += phi;
    for (casadi_int k = n - 1; k >= 0 && !failed; --k) {
#if TP_STORED  /* p_prev = gx + Jxᵀ p, g_u = gu + Juᵀ p */
      const casadi_real *Jx = kept + k * TP_KEPT, *Ju = Jx + nx * nx, *gx = Ju + nx * nu, *gu = gx + nx;
      for (casadi_int j = 0; j < nx; ++j) {
        casadi_real s = gx[j];
        for (casadi_int m = 0; m < nx; ++m) s += Jx[m + j * nx] * p[m];
        p_prev[j] = s;
      }
      for (casadi_int j = 0; j < nu; ++j) {
        casadi_real s = gu[j];
        for (casadi_int m = 0; m < nx; ++m) s += Ju[m + j * nx] * p[m];
        g_u[j] = s;
      }
#else
      arg[0] = kept + k * nx; arg[1] = t->u + k * nu; arg[2] = y_i; arg[3] = &h; arg[4] = p;
      res[0] = p_prev; res[1] = g_u;
      failed = tp_step_vjp(arg, res, iwork, work, 0);
#endif
      for (casadi_int j = 0; j < nu; ++j) t->grad[k * nu + j] += g_u[j];
      casadi_real* swap = p; p = p_prev; p_prev = swap;
    }
  }
  free(arg); free(res); free(iwork); free(work);
  t->J = total;
  t->failed = failed;
  return NULL;
}

/* J = (1/N) sum_i (sum_k q_ik + phi_i) and its gradient in u (n, nu), the samples split into `threads`
   contiguous parts, one per thread. The parts are summed in order, so the result depends on `threads`
   only through the order of the additions. Returns 0, or 1 if memory or a thread could not be had or a
   stage function failed. */
CASADI_SYMBOL_EXPORT int tp_ensemble_gradient(casadi_int N, casadi_int n, const casadi_real* x0,
    const casadi_real* u, const casadi_real* y, casadi_real h, casadi_int threads, casadi_real* J,
    casadi_real* grad) {
  const casadi_int nu = TP_NU;
  threads = threads < 1 ? 1 : (threads > N ? (N > 0 ? N : 1) : threads);
  tp_task* tasks = calloc(threads, sizeof(tp_task));
  pthread_t* ids = calloc(threads, sizeof(pthread_t));
  int* started = calloc(threads, sizeof(int));
  casadi_real* partial = malloc(sizeof(casadi_real) * (threads * n * nu + 1));
  if (!tasks || !ids || !started || !partial) {
    free(tasks); free(ids); free(started); free(partial);
    return 1;
  }
  for (casadi_int t = 0; t < threads; ++t) {
    tp_task task = {N * t / threads, N * (t + 1) / threads, n, x0, u, y, h, 0, partial + t * n * nu, 0};
    tasks[t] = task;
  }
  for (casadi_int t = 1; t < threads; ++t) started[t] = pthread_create(&ids[t], NULL, tp_run, &tasks[t]) == 0;
  tp_run(&tasks[0]);
  int failed = tasks[0].failed;
  for (casadi_int t = 1; t < threads; ++t) {
    if (started[t]) pthread_join(ids[t], NULL); else tp_run(&tasks[t]);  /* no thread: run it here */
    failed = failed || tasks[t].failed;
  }
  casadi_real total = 0;
  memset(grad, 0, sizeof(casadi_real) * n * nu);
  for (casadi_int t = 0; t < threads; ++t) {
    total += tasks[t].J;
    for (casadi_int j = 0; j < n * nu; ++j) grad[j] += tasks[t].grad[j];
  }
  *J = total / N;
  for (casadi_int j = 0; j < n * nu; ++j) grad[j] /= N;
  free(tasks); free(ids); free(started); free(partial);
  return failed ? 1 : 0;
}
"""


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


# A libm transcendental (tanh, exp, ...) costs about as much as 200 arithmetic instructions of the
# generated straight-line C code (benchmarks/bench_gradient.py times both gradient loops against this rule).
_TRANSCENDENTAL = 200
_ELEMENTARY = {ca.OP_TANH, ca.OP_EXP, ca.OP_LOG, ca.OP_SIN, ca.OP_COS, ca.OP_TAN, ca.OP_ASIN, ca.OP_ACOS,
               ca.OP_ATAN, ca.OP_SINH, ca.OP_COSH, ca.OP_ERF, ca.OP_POW, ca.OP_CONSTPOW, ca.OP_SQRT}
_FREE = {ca.OP_INPUT, ca.OP_OUTPUT, ca.OP_CONST, ca.OP_PARAMETER}


def _instruction_cost(fn: ca.Function) -> int:
    """Estimated run time of an SX function in arithmetic instructions: each transcendental counts
    :data:`_TRANSCENDENTAL`, each other operation 1, inputs, outputs and constants 0."""
    ops = (fn.instruction_id(k) for k in range(fn.n_instructions()))
    return sum(_TRANSCENDENTAL if op in _ELEMENTARY else op not in _FREE for op in ops)


def ensemble_gradient(step: ca.Function, terminal: ca.Function, stored: bool | None = None):
    """``(x0, u, y, h) -> (J, ∇_u J)`` for the ensemble, compiled, or None when that is not possible.

    ``step`` is one interval of one sample, ``(x, u, y, h) -> (x_next, q)`` (SX), and ``terminal``
    is ``(x, y) -> φ``. With ``x0`` (N, nx), ``u`` (steps, nu), ``y`` (N, ny) the call returns

        ``J = (1/N) Σ_i (Σ_k q_{i,k} + φ(x_{i,n}, y_i))`` and ``∇_{u_k} J = (1/N) Σ_i ∇_u ℓ_{i,k}``,

    with ``ℓ_{i,k} = q_{i,k} + p_{i,k+1}ᵀ x_{i,k+1}`` and the adjoint ``p_{i,n} = ∇φ``,
    ``p_{i,k} = ∇_x ℓ_{i,k}`` (the recursion of :mod:`turnpike.reduced`). The control costs are not
    included. Two loops compute the same numbers (to round-off):

    * ``stored=False``: the forward pass keeps the states; the backward pass evaluates the stage's
      reverse mode (CasADi's), which evaluates the stage again.
    * ``stored=True``: the forward pass evaluates the stage with its first derivatives
      ``∂x_next/∂(x, u)`` and ``∇q`` (one SX function, common subexpressions shared) and keeps them,
      ``nx (nx + nu) + nx + nu`` numbers per stage; the backward pass is products with them. Each
      transcendental is evaluated once instead of twice, at the price of more arithmetic.

    ``stored=None`` picks the cheaper by :func:`_instruction_cost` (the backward products counted
    as ``2 nx (nx + nu)``); the returned function's ``stored`` attribute says which. Memory is one
    sample's stages per thread either way.
    """
    x, u, y, h = (step.sx_in(i) for i in range(4))
    x_next, q = step(x, u, y, h)
    phi = terminal(x, y)
    terminal_fn = ca.Function("tp_terminal", [x, y], [ca.densify(phi), ca.densify(ca.gradient(phi, x))])

    def kept_jacobians():
        return [ca.Function("tp_stage", [x, u, y, h], [ca.densify(e) for e in (
            x_next, q, ca.vec(ca.jacobian(x_next, x)), ca.vec(ca.jacobian(x_next, u)), ca.gradient(q, x),
            ca.gradient(q, u))])]

    def reverse_mode():
        p = ca.SX.sym("p", x.numel())
        ell = q + ca.dot(p, x_next)
        return [ca.Function("tp_step", [x, u, y, h], [ca.densify(x_next), ca.densify(q)]),
                ca.Function("tp_step_vjp", [x, u, y, h, p], [ca.densify(ca.gradient(ell, x)),
                                                             ca.densify(ca.gradient(ell, u))])]

    if stored is None:  # build both and count
        loops = {True: kept_jacobians(), False: reverse_mode()}
        cost = {flag: sum(_instruction_cost(f) for f in fns) for flag, fns in loops.items()}
        stored = cost[True] + 2 * x.numel() * (x.numel() + u.numel()) < cost[False]
        stage_functions = loops[stored]
    else:  # build only the one asked for
        stage_functions = kept_jacobians() if stored else reverse_mode()
    functions = [*stage_functions, terminal_fn]
    sizes = "".join(f"#define TP_{k} {v}\n" for k, v in (("NX", x.numel()), ("NU", u.numel()), ("NY", y.numel()),
                                                         ("STORED", int(stored))))
    target = _shared_library("turnpike_ensemble_gradient", functions, sizes + _GRADIENT_LOOP)
    if target is None:
        return None
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
            raise RuntimeError("the compiled ensemble gradient failed (memory or a stage evaluation)")
        return float(J[0]), grad

    gradient.stored = stored  # which loop: the stage's derivatives kept (True) or its reverse mode (False)
    return gradient
