"""The ensemble's exact Hessian-vector product as compiled C: forward over reverse mode, sample by sample.

For the reduced objective of :mod:`turnpike.reduced` (``x_{k+1} = F(x_k, u_k)`` per sample,
``ℓ_k = q_k + p_{k+1}ᵀ F_k``, adjoint ``p_n = ∇φ``, ``p_k = ∇_x ℓ_k``, gradient ``∇_{u_k} J =
(1/N) Σ_i ∇_u ℓ_{i,k}``) the product ``∇²J v`` is the derivative of the gradient in the direction v:

* forward, the tangent of the states: ``δx_0 = 0``, ``δx_{k+1} = F_x δx_k + F_u v_k``;
* backward, the tangent of the adjoint: ``δp_n = ∇²φ δx_n`` and

  .. math::

      (δp_k, (∇²J v)_k) = ∇²_{(x,u),(x,u,p)}\\, ℓ_k \\cdot (δx_k, v_k, δp_{k+1}),

  i.e. the forward mode of the stage's ``(x, u, p) -> ∇_{x,u} ℓ`` (the "stage vjp") in the direction
  ``(δx_k, v_k, δp_{k+1})``, summed over the samples and divided by N.

The steps are the integrator's stages taken one at a time (:func:`turnpike.reduced.substep_recursion`: four
per RK4 interval, each with one evaluation of the field, on the state ``(x, a, ξ)``; the gradient and the product
in ``u_k`` are summed over the stages of interval k), so the functions compiled hold one evaluation of the field,
not four (at width 200, 23 k instructions instead of 95 k). Each is one sample's SX function (its size grows like
the width of the network, never like its square), written by :func:`turnpike.codegen.lanes_function` for
``TP_LANES`` samples at a time (:func:`turnpike.compiled.lanes_library`) and compiled like
:func:`turnpike.compiled.ensemble_gradient`, whose loop this one follows: the blocks of samples are
split over :func:`~turnpike.compiled.threads` threads and the partial sums added in order. One call
also returns J and ∇J. The forward pass keeps the values of each stage's tanh and exp and their tangents, and the
backward pass differentiates the stage's adjoint from them (:func:`stage_functions`) instead of evaluating the
stage again. Memory: the states, the values and their tangents of one block at every stage, ``2 (s steps + 1)
nz + 2 s steps m`` times ``TP_LANES`` numbers per thread (s stages per interval, ``nz = 3 nx``, m tanh and exp
per stage).
"""

from __future__ import annotations

import ctypes
import functools
from contextlib import contextmanager

import casadi as ca
import numpy as np

from .codegen import lanes_function
from .compiled import adjoint_by_values, lanes_compiling, threads

__all__ = ["compiling_hessian_vector", "ensemble_hessian_vector"]

# tp_step_jvp (x, u, y, h, c, dx, du) -> (x_next, q, dx_next, r, dr), r the TP_NR values of the stage's tanh and
# exp; tp_terminal_hvp (x, y, dx) -> (φ, ∇φ, ∇²φ dx); tp_step_vjp_jvp (x, u, y, h, c, p, dx, du, dp, r, dr) ->
# (∇_x ℓ, ∇_u ℓ, their derivative in (dx, du, dp)), ℓ = q + p·x_next.
# u, h and the direction's du are the same for every lane. Arrays passed in are row-major numpy: x0 (N, nx),
# u and v (n, nu), y (N, ny).
_LOOP = r"""
/* The chunks [first, last) of one thread, and every chunk's partial sums J[c], grad + c n nu, hv + c n nu (as in
   turnpike.compiled's gradient loop). */
typedef struct {
  long long first, last, chunk, blocks, n, N;
  const double *x0, *u, *y, *v, *c;
  double h, *J, *grad, *hv;
  int failed;
} tp_task;

static void* tp_run(void* data) {
  tp_task* t = (tp_task*) data;
  const long long nx = TP_NX, nu = TP_NU, ny = TP_NY, L = TP_LANES, n = t->n, s = TP_SUBSTEPS, m = n * s;
  const long long nr = TP_NR;
  double* memory = malloc(sizeof(double) * L * (2 * (m + 1) * nx + 2 * m * nr + 4 * nx + ny + 2 * nu + 2));
  t->failed = !memory;
  if (!memory) return NULL;
  double *xs = memory, *dxs = xs + (m + 1) * nx * L, *rs = dxs + (m + 1) * nx * L, *drs = rs + m * nr * L;
  double *p = drs + m * nr * L, *dp = p + nx * L;
  double *p_prev = dp + nx * L, *dp_prev = p_prev + nx * L, *y = dp_prev + nx * L, *g_u = y + ny * L;
  double *hv_u = g_u + nu * L, *q = hv_u + nu * L, *phi = q + L;
  double h = t->h;
  for (long long c = t->first; c < t->last; ++c) {
    double total = 0, *grad = t->grad + c * n * nu, *hv = t->hv + c * n * nu;
    memset(grad, 0, sizeof(double) * n * nu);
    memset(hv, 0, sizeof(double) * n * nu);
    const long long b_end = (c + 1) * t->chunk < t->blocks ? (c + 1) * t->chunk : t->blocks;
    for (long long b = c * t->chunk; b < b_end; ++b) {
    const long long first = b * L, valid = t->N - first < L ? t->N - first : L;
    for (long long l = 0; l < L; ++l) {
      const long long i = first + (l < valid ? l : valid - 1);
      for (long long j = 0; j < nx; ++j) { xs[j * L + l] = t->x0[i * nx + j]; dxs[j * L + l] = 0; }
      for (long long j = 0; j < ny; ++j) y[j * L + l] = t->y[i * ny + j];
    }
    for (long long k = 0; k < m; ++k) {  /* substep k: stage k % s of interval k / s */
      const double* in[] = {xs + k * nx * L, t->u + k / s * nu, y, &h, t->c + k % s * 3, dxs + k * nx * L,
                            t->v + k / s * nu};
      double* out[] = {xs + (k + 1) * nx * L, q, dxs + (k + 1) * nx * L, rs + k * nr * L, drs + k * nr * L};
      tp_step_jvp(in, out);
      for (long long l = 0; l < valid; ++l) total += q[l];
    }
    {
      const double* in[] = {xs + m * nx * L, y, dxs + m * nx * L};
      double* out[] = {phi, p, dp};
      tp_terminal_hvp(in, out);
    }
    for (long long l = 0; l < valid; ++l) total += phi[l];
    for (long long k = m - 1; k >= 0; --k) {
      const double* in[] = {xs + k * nx * L, t->u + k / s * nu, y, &h, t->c + k % s * 3, p, dxs + k * nx * L,
                            t->v + k / s * nu, dp, rs + k * nr * L, drs + k * nr * L};
      double* out[] = {p_prev, g_u, dp_prev, hv_u};
      tp_step_vjp_jvp(in, out);
      for (long long j = 0; j < nu; ++j) {
        double g = 0, r = 0;
        for (long long l = 0; l < valid; ++l) { g += g_u[j * L + l]; r += hv_u[j * L + l]; }
        grad[k / s * nu + j] += g;
        hv[k / s * nu + j] += r;
      }
      double* swap = p; p = p_prev; p_prev = swap;
      swap = dp; dp = dp_prev; dp_prev = swap;
    }
    }
    t->J[c] = total;
  }
  free(memory);
  return NULL;
}

/* J, its gradient and the product of its Hessian with v, all (1/N) sum_i, summed chunk by chunk as the gradient
   loop does (the numbers do not depend on `threads`). Returns 0, or 1 if memory could not be had. */
int tp_ensemble_hessian_vector(long long N, long long n, const double* x0, const double* u, const double* y,
                               double h, const double* c, const double* v, long long threads, double* J,
                               double* grad, double* hv) {
  const long long nu = TP_NU, blocks = (N + TP_LANES - 1) / TP_LANES;
  long long chunk = TP_CHUNK_BLOCKS, most = TP_PARTIAL_NUMBERS / (2 * n * nu + 1);  /* chunks whose sums fit */
  most = most < 1 ? 1 : (most > TP_MAX_CHUNKS ? TP_MAX_CHUNKS : most);
  if (blocks > chunk * most) chunk = (blocks + most - 1) / most;
  const long long chunks = blocks > 0 ? (blocks + chunk - 1) / chunk : 0;
  threads = threads < 1 ? 1 : (threads > chunks ? (chunks > 0 ? chunks : 1) : threads);
  tp_task* tasks = calloc(threads, sizeof(tp_task));
  double* partial = malloc(sizeof(double) * (chunks * (2 * n * nu + 1) + 1));
  if (!tasks || !partial) {
    free(tasks); free(partial);
    return 1;
  }
  double *J_c = partial + 2 * chunks * n * nu, *hv_c = partial + chunks * n * nu;
  for (long long t = 0; t < threads; ++t) {
    tp_task task = {chunks * t / threads, chunks * (t + 1) / threads, chunk, blocks, n, N, x0, u, y, v, c, h, J_c,
                    partial, hv_c, 0};
    tasks[t] = task;
  }
  tp_parallel(tp_run, tasks, threads, sizeof(tp_task));
  int failed = 0;
  for (long long t = 0; t < threads; ++t) failed = failed || tasks[t].failed;
  double total = 0;
  memset(grad, 0, sizeof(double) * n * nu);
  memset(hv, 0, sizeof(double) * n * nu);
  for (long long c = 0; c < chunks && !failed; ++c) {
    total += J_c[c];
    for (long long j = 0; j < n * nu; ++j) { grad[j] += partial[c * n * nu + j]; hv[j] += hv_c[c * n * nu + j]; }
  }
  *J = total / N;
  for (long long j = 0; j < n * nu; ++j) { grad[j] /= N; hv[j] /= N; }
  free(tasks); free(partial);
  return failed;
}
"""


def stage_functions(step: ca.Function, terminal: ca.Function, keep: bool = True) -> list[ca.Function]:
    """The three SX functions of the loop (see the module docstring), from one sample's step
    ``(x, u, y, h, c) -> (x_next, q)`` and terminal cost ``(x, y) -> φ``. The forward one also gives the values r
    of the step's tanh and exp and their tangents dr, and the backward one is the forward mode of the adjoint
    written in them (:func:`turnpike.compiled.adjoint_by_values`): the derivative of ``g(x, u, p, r(x, u))`` in
    ``(dx, du, dp)`` is ``g``'s in ``(dx, du, dp, dr)``, without a transcendental. With ``keep=False`` there are
    no r (CasADi's forward over reverse mode of the stage, which evaluates it again)."""
    a = adjoint_by_values(step, keep)
    x, u, y, h, c = a.inputs
    dx, du = ca.SX.sym("dx", x.numel()), ca.SX.sym("du", u.numel())
    dp, dr = ca.SX.sym("dp", x.numel()), ca.SX.sym("dr", a.r.numel())
    forward = ca.vertcat(a.x_next, a.values)
    d_forward = ca.jtimes(forward, ca.vertcat(x, u), ca.vertcat(dx, du))
    nx = x.numel()
    g = ca.vertcat(a.g_x, a.g_u)
    dg = ca.jtimes(g, ca.vertcat(x, u, a.p, a.r), ca.vertcat(dx, du, dp, dr))
    phi = terminal(x, y)
    g_phi = ca.gradient(phi, x)
    return [
        ca.Function("tp_step_jvp", [x, u, y, h, c, dx, du],
                    [ca.densify(e) for e in (a.x_next, a.q, d_forward[:nx], a.values, d_forward[nx:])]),
        ca.Function("tp_step_vjp_jvp", [x, u, y, h, c, a.p, dx, du, dp, a.r, dr],
                    [ca.densify(e) for e in (a.g_x, a.g_u, dg[:nx], dg[nx:])]),
        ca.Function("tp_terminal_hvp", [x, y, dx], [ca.densify(e) for e in (phi, g_phi, ca.jtimes(g_phi, x, dx))]),
    ]


def ensemble_hessian_vector(step: ca.Function, terminal: ca.Function, coefficients: np.ndarray, keep: bool = True):
    """``(x0, u, y, h, v) -> (J, ∇J, ∇²J v)`` for the ensemble, compiled, or None when that is not possible
    (no compiler, a stage function over :data:`~turnpike.codegen.MAX_INSTRUCTIONS`, ...).

    ``step`` is one stage of the integrator, ``(z, u, y, h, c) -> (z_next, q)``, taken with ``c =
    coefficients[j % s]`` at substep j of interval ``j // s`` (s rows; :func:`turnpike.reduced.substep_recursion`).
    ``x0`` (N, the size of z: its initial values), ``u`` and ``v`` (steps, nu), ``y`` (N, ny); J and its derivatives
    are those of :func:`turnpike.compiled.ensemble_gradient` (the ensemble terms only, no control costs).
    ``keep``: see :func:`stage_functions`.
    """
    with compiling_hessian_vector(step, terminal, coefficients, keep) as product:
        return product()


@contextmanager
def compiling_hessian_vector(step: ca.Function, terminal: ca.Function, coefficients: np.ndarray, keep: bool = True):
    """Within: :func:`ensemble_hessian_vector`'s library compiled in the background (its C code is written before
    the block starts, with CasADi). Yields a function that waits for the compiler and returns what
    :func:`ensemble_hessian_vector` returns; leaving the block by an exception kills the compiler
    (:func:`~turnpike.compiled.lanes_compiling`)."""
    functions = stage_functions(step, terminal, keep)
    shared = {"tp_step_jvp": {1, 3, 4, 6}, "tp_step_vjp_jvp": {1, 3, 4, 7}, "tp_terminal_hvp": set()}
    written = [lanes_function(f, f.name(), shared=shared[f.name()]) for f in functions]
    if any(w is None for w in written):
        yield lambda: None
        return
    x, u, y = (step.sx_in(i) for i in range(3))
    coefficients = np.ascontiguousarray(coefficients, dtype=float)
    sizes = "".join(f"#define TP_{k} {v}\n" for k, v in (
        ("NX", x.numel()), ("NU", u.numel()), ("NY", y.numel()), ("SUBSTEPS", coefficients.shape[0]),
        ("NR", functions[0].nnz_out(3))))
    with lanes_compiling("turnpike_ensemble_hessian_vector", written, sizes, _LOOP) as built:
        yield functools.cache(lambda: _loaded(built(), coefficients))


def _loaded(built, coefficients: np.ndarray):
    """The product from the compiled library ``built`` (``(path, build)`` or None), or None."""
    if built is None:
        return None
    try:
        loop = ctypes.CDLL(str(built[0])).tp_ensemble_hessian_vector
    except (OSError, AttributeError):
        return None
    pointer = ctypes.c_void_p
    loop.argtypes = [ctypes.c_longlong, ctypes.c_longlong, pointer, pointer, pointer, ctypes.c_double, pointer,
                     pointer, ctypes.c_longlong, pointer, pointer, pointer]
    loop.restype = ctypes.c_int

    def product(x0, u, y, h, v) -> tuple[float, np.ndarray, np.ndarray]:
        x0, u, y, v = (np.ascontiguousarray(a, dtype=float) for a in (x0, u, y, v))
        J, grad, hv = np.zeros(1), np.empty_like(u), np.empty_like(u)
        if loop(x0.shape[0], u.shape[0], x0.ctypes.data, u.ctypes.data, y.ctypes.data, float(h),
                coefficients.ctypes.data, v.ctypes.data, threads(), J.ctypes.data, grad.ctypes.data,
                hv.ctypes.data) != 0:
            raise RuntimeError("the compiled Hessian-vector product could not allocate its work memory")
        return float(J[0]), grad, hv

    product.build = built[1]
    return product
