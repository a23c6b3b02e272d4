"""Independent checks of a solution: re-simulation with an adaptive integrator, and the step check."""

from __future__ import annotations

import casadi as ca
import numpy as np
from scipy.integrate import solve_ivp

from .derivatives import Batch
from .errors import InputError, SolverError
from .problem import Problem
from .solution import Solution
from .transcription import stage_function

__all__ = ["ORDERS", "STEP_TOLERANCE", "refined_states", "resimulate", "resimulation_error", "step_check"]

#: The order p of each integrator's global error ``O(h^p)``.
ORDERS = {"euler": 1, "midpoint": 2, "rk4": 4}

#: Above this relative change of the trajectory when the step is halved, a solve is flagged. Measured
#: changes: two circles (N = 40, T = 5, 100 RK4 steps) 0.011, (N = 1000, 200 steps) 0.068; the transport
#: equation with 20 cells and RK4 at h = 0.05 (inside its stability bound 0.069) 0.025, at h = 0.1 0.19.
STEP_TOLERANCE = 5e-2


class _TooLong(Exception):
    """The adaptive integration of one interval spent its budget of evaluations."""


def resimulate(problem: Problem, solution: Solution, *, rtol: float = 1e-10, atol: float = 1e-12,
               max_evaluations: int = 10**6) -> np.ndarray:
    """States at the grid times reached by ``solution.u`` under the *continuous* dynamics.

    Each interval ``[t_k, t_{k+1}]`` is integrated with the control held at ``u_k`` by
    ``scipy.integrate.solve_ivp`` (DOP853, tolerances ``rtol``/``atol``), all samples at once;
    nothing of the transcription is used. The difference to ``solution.x`` is then the
    discretisation error of the transcription's integrator (``O(h)`` Euler, ``O(h^4)`` RK4).

    Returns:
        Array shaped like ``solution.x``.

    Raises:
        SolverError: an interval needs more than ``max_evaluations`` evaluations of f (an interval far
            longer than the dynamics' time scale, e.g. T = 1e12 on a few steps), or the integration fails.
    """
    if solution.u.shape != (solution.steps, problem.nu) or solution.x[0].size != problem.nx * problem.n_samples:
        raise InputError(
            f"solution (x {solution.x.shape}, u {solution.u.shape}) does not belong to problem {problem!r}"
        )
    N, nx = problem.n_samples, problem.nx
    f = Batch(problem.dynamics.map(N))  # numpy in and out, no DM: the integrator calls it 10⁴-10⁵ times
    Y = problem.data_values.T

    states = [problem.x0_samples.reshape(-1)]
    for k in range(solution.steps):
        u = solution.u[k][:, None]

        calls = [0]

        def rhs(_t, z, u=u, calls=calls):
            calls[0] += 1
            if calls[0] > max_evaluations:
                raise _TooLong
            return f(z.reshape(N, nx).T, u, Y)[0].T.reshape(-1)

        span = (solution.t[k], solution.t[k + 1])
        try:
            out = solve_ivp(rhs, span, states[-1], method="DOP853", rtol=rtol, atol=atol)
        except _TooLong:
            raise SolverError(f"re-simulation of interval {k}, [{span[0]:g}, {span[1]:g}], took more than "
                              f"{max_evaluations} evaluations of f: the interval is far longer than the dynamics' "
                              "time scale (use more steps, or raise max_evaluations)") from None
        if not out.success:
            raise SolverError(f"re-simulation failed on interval {k}: {out.message}")
        states.append(out.y[:, -1])
    return np.array(states).reshape(solution.x.shape)


def refined_states(problem: Problem, u: np.ndarray, T: float, method: str, factor: int, x0=None) -> np.ndarray:
    """States (steps+1, N, nx) at the grid times of the controls ``u`` (steps, nu) when every interval is
    advanced by ``factor`` steps of ``method`` of length ``h/factor`` (one CasADi ``mapaccum``), from
    ``x0`` (N, nx), default the problem's."""
    steps, N = u.shape[0], problem.n_samples
    x0 = problem.x0_samples if x0 is None else x0
    one = stage_function(problem, method).map(N)
    X = ca.MX.sym("X", problem.nx, N)
    v = ca.MX.sym("u", problem.nu)
    h = T / (steps * factor)
    advance = ca.Function("advance", [X, v], [one(X, v, ca.DM(problem.data_values.T), h)[0]])
    states = advance.mapaccum(steps * factor)(x0.T, np.repeat(u, factor, axis=0).T)
    states = np.asarray(states).reshape(problem.nx, steps * factor, N)[:, factor - 1 :: factor, :]  # step-major
    return np.concatenate([x0[None], states.transpose(1, 2, 0)])


def step_check(problem: Problem, solution: Solution, method: str) -> tuple[dict, list[str]]:
    """Whether the step of ``solution`` resolves the ODE: the same scheme at ``h/2`` and ``h/4``.

    With ``e1 = max_k |x_h(t_k) - x_{h/2}(t_k)|_∞`` and ``e2`` the same between ``h/2`` and ``h/4``
    (all samples, the grid times), a scheme of order p in its asymptotic range has ``e1/e2 ≈ 2^p`` and
    the error of the solution's states is about ``e1 · 2^p/(2^p - 1)``. Returns ``(report, warnings)``:
    the report has ``change`` (``e1`` relative to ``max(1, max|x|)``), ``observed_order``
    (``log2(e1/e2)``) and ``estimated_error``; a warning is given when ``change > STEP_TOLERANCE``:
    the step is unstable or too coarse (the observed order is more than 1 away from p: halving the step
    does not converge as the scheme should, e.g. an explicit step past its stability bound) or the
    discretisation error is just large. Where the dynamics amplify perturbations (an open-loop unstable
    system over a long horizon) the change measures that amplification too: the warning then says by how
    much a perturbation of x0 grows (``amplification`` in the report, when above 1000).
    """
    u, T = np.asarray(solution.u), solution.T
    x = np.asarray(solution.x).reshape(solution.steps + 1, problem.n_samples, problem.nx)
    with np.errstate(all="ignore"):
        half, quarter = (refined_states(problem, u, T, method, f) for f in (2, 4))
        scale = max(1.0, float(np.max(np.abs(x))))
        e1, e2 = float(np.max(np.abs(x - half))), float(np.max(np.abs(half - quarter)))
        p = ORDERS[method]
        order = float(np.log2(e1 / e2)) if e1 > 0 and e2 > 0 else np.nan
    report = {"reference": "the same scheme with steps h/2 and h/4", "change": e1 / scale,
              "observed_order": order, "order": p, "estimated_error": e1 * 2**p / (2**p - 1)}
    if np.isfinite(e1) and e1 / scale <= STEP_TOLERANCE:
        return report, []
    change = f"halving the step changes the states by {e1 / scale:.2g} of their scale"
    if abs(order - p) <= 0.5:
        why = f"{change} (observed order {order:.2g}, as the scheme's {p}): the discretisation error is large"
    else:
        why = (f"{change}, and halving it again by {e2 / scale:.2g} (observed order {order:.2g}, the scheme's {p}): "
               "the step is unstable or too coarse for the dynamics")
    growth = _amplification(problem, u, T, method, quarter)
    report["amplification"] = growth
    if growth > 1e3:
        why += (f"; the dynamics amplify perturbations of x0 by {growth:.2g} over [0, T] (at h/4), as an open-loop "
                "unstable system does, and this difference includes that amplification")
    return report, [why + "; use more steps"]


def _amplification(problem: Problem, u: np.ndarray, T: float, method: str, reference: np.ndarray) -> float:
    """``max |x_δ(t_k) - x(t_k)|_∞ / δ`` over the grid for x0 perturbed by ``δ = 1e-7 max(1, |x0|_∞)`` in every
    component (the scheme at h/4): how much the dynamics amplify a perturbation (1 for a neutral system)."""
    x0 = problem.x0_samples
    delta = 1e-7 * max(1.0, float(np.abs(x0).max()))
    with np.errstate(all="ignore"):
        moved = refined_states(problem, u, T, method, 4, x0=x0 + delta)
        growth = float(np.max(np.abs(moved - reference)) / delta)
    return growth if np.isfinite(growth) else np.inf


def resimulation_error(problem: Problem, solution: Solution, **options) -> float:
    """``max_k |x_k - x(t_k)|_∞`` between the solution's states and :func:`resimulate`."""
    return float(np.max(np.abs(resimulate(problem, solution, **options) - solution.x)))
