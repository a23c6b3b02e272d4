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
  generated stage functions). The number of samples and of stages are arguments of the call, so
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


# The loop around the generated functions tp_step (x, u, y, h) -> (x_next, q),
# tp_step_vjp (x, u, y, h, p) -> (∇_x ℓ, ∇_u ℓ) with ℓ = q + p·x_next, and
# tp_terminal (x, y) -> (φ, ∇φ). Arrays are row-major numpy: x0 (N, nx), u (n, nu), y (N, ny).
_GRADIENT_LOOP = r"""
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define TP_MAX(a, b) ((a) > (b) ? (a) : (b))

/* The samples [first, last) of one thread, its own work space, and its partial sums. */
typedef struct {
  casadi_int first, last, n;
  const casadi_real *x0, *u, *y;
  casadi_real h, J, *grad;
  int failed;
} tp_task;

/* Sum over the task's samples of sum_k q_ik + phi_i and of its gradient in u, by the discrete adjoint
   of each sample in turn: forward over the stages keeping the states, then backward with the adjoint. */
static void* tp_run(void* data) {
  tp_task* t = (tp_task*) data;
  const casadi_int nx = TP_NX, nu = TP_NU, ny = TP_NY, n = t->n;
  casadi_int n_arg = 0, n_res = 0, n_iw = 0, n_w = 0, a, r, iw, w;
  int (*sizes[3])(casadi_int*, casadi_int*, casadi_int*, casadi_int*) = {
      tp_step_work, tp_step_vjp_work, tp_terminal_work};
  for (int f = 0; f < 3; ++f) {  /* one work space, large enough for each of the three */
    sizes[f](&a, &r, &iw, &w);
    n_arg = TP_MAX(n_arg, a); n_res = TP_MAX(n_res, r); n_iw = TP_MAX(n_iw, iw); n_w = TP_MAX(n_w, w);
  }
  const casadi_real** arg = malloc(sizeof(casadi_real*) * (n_arg + 1));
  casadi_real** res = malloc(sizeof(casadi_real*) * (n_res + 1));
  casadi_int* iwork = malloc(sizeof(casadi_int) * (n_iw + 1));
  casadi_real* work = malloc(sizeof(casadi_real) * (n_w + (n + 1) * nx + 2 * nx + nu + 1));
  int failed = !arg || !res || !iwork || !work;
  casadi_real *x = work + n_w, *p = x + (n + 1) * nx, *p_prev = p + nx, *g_u = p_prev + nx;
  casadi_real q, phi, h = t->h, total = 0;
  memset(t->grad, 0, sizeof(casadi_real) * n * nu);
  for (casadi_int i = t->first; i < t->last && !failed; ++i) {
    const casadi_real* y_i = t->y + i * ny;
    memcpy(x, t->x0 + i * nx, sizeof(casadi_real) * nx);
    for (casadi_int k = 0; k < n && !failed; ++k) {
      arg[0] = x + k * nx; arg[1] = t->u + k * nu; arg[2] = y_i; arg[3] = &h;
      res[0] = x + (k + 1) * nx; res[1] = &q;
      failed = tp_step(arg, res, iwork, work, 0);
      total += q;
    }
    arg[0] = x + n * nx; arg[1] = y_i; res[0] = &phi; res[1] = p;
    failed = failed || tp_terminal(arg, res, iwork, work, 0);
    total += phi;
    for (casadi_int k = n - 1; k >= 0 && !failed; --k) {
      arg[0] = x + k * nx; arg[1] = t->u + k * nu; arg[2] = y_i; arg[3] = &h; arg[4] = p;
      res[0] = p_prev; res[1] = g_u;
      failed = tp_step_vjp(arg, res, iwork, work, 0);
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


def ensemble_gradient(step: ca.Function, terminal: ca.Function):
    """``(x0, u, y, h) -> (J, ∇_u J)`` for the ensemble, compiled, or None when that is not possible.

    ``step`` is one interval of one sample, ``(x, u, y, h) -> (x_next, q)`` (SX), and ``terminal``
    is ``(x, y) -> φ``. With ``x0`` (N, nx), ``u`` (steps, nu), ``y`` (N, ny) the call returns

        ``J = (1/N) Σ_i (Σ_k q_{i,k} + φ(x_{i,n}, y_i))`` and ``∇_{u_k} J = (1/N) Σ_i ∇_u ℓ_{i,k}``,

    with ``ℓ_{i,k} = q_{i,k} + p_{i,k+1}ᵀ x_{i,k+1}`` and the adjoint ``p_{i,n} = ∇φ``,
    ``p_{i,k} = ∇_x ℓ_{i,k}`` (the recursion of :mod:`turnpike.reduced`, evaluated by CasADi's reverse
    mode of the stage; no Jacobian is formed). The control costs are not included.
    """
    x, u, y, h = (step.sx_in(i) for i in range(4))
    x_next, q = step(x, u, y, h)
    p = ca.SX.sym("p", x.numel())
    ell = q + ca.dot(p, x_next)
    phi = terminal(x, y)
    functions = [
        ca.Function("tp_step", [x, u, y, h], [ca.densify(x_next), ca.densify(q)]),
        ca.Function("tp_step_vjp", [x, u, y, h, p], [ca.densify(ca.gradient(ell, x)), ca.densify(ca.gradient(ell, u))]),
        ca.Function("tp_terminal", [x, y], [ca.densify(phi), ca.densify(ca.gradient(phi, x))]),
    ]
    sizes = f"#define TP_NX {x.numel()}\n#define TP_NU {u.numel()}\n#define TP_NY {y.numel()}\n"
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

    return gradient
