"""Diagnostics of learning problems: control size, stopping time, layers to reach an error, rescaling,
and the switching function of problems with an exact L1 term.

Controls are piecewise constant: ``u_k`` acts on ``[t_k, t_{k+1})`` (layer k+1 of the ResNet).

Switching function (cost (C) of docs/mathematics.md §1, and any problem with an L1 term). Write the discrete
cost as ``J = J_s(u) + λ1 h Σ_k |u_k|_1 (+ λ2 h Σ_k |u_k|²)`` with ``J_s`` the running quadrature and the
terminal cost. :func:`switching_function` returns ``s_k = (1/h) ∂J_s/∂u_k``, the discrete counterpart of
``∇_u ℋ(t) = (1/N) Σ_i f_u(x_i, u)ᵀ p_i(t)`` (plus ``∇_u L``). The KKT conditions of the NLP with the bound
``|u_k|_1 <= M`` (multiplier ``ν_k >= 0``) read, for ``λ2 = 0``:

* ``u_kj = 0``  =>  ``|s_kj| <= λ1 + ν_k / h``;
* ``u_kj != 0`` =>  ``s_kj = -sign(u_kj) (λ1 + ν_k / h)``, so every active component has the largest ``|s_kj|``;
* ``ν_k > 0`` only if ``|u_k|_1 = M``: if ``max_j |s_kj| > λ1`` the control saturates the bound.

For a field linear in u this is Pontryagin's principle: ``u(t)`` minimises ``λ1|u|_1 + s(t)ᵀ u`` over the
ball ``|u|_1 <= M``, so it is 0 where ``|s|_∞ < λ1`` and ``±M e_k`` where one component ``k`` has the largest
``|s_k| > λ1`` (a *regular* arc, one active parameter); where several components tie on an interval (a
*singular* arc) the control may lie anywhere on the face of the ball they span.

"Zero" for an interior-point solver. IPOPT stops with a barrier parameter ``μ`` of the order of its ``tol``
and complementarity ``u⁺_kj z_kj ≈ μ``, where the bound multiplier of an inactive component is
``z_kj = h (λ1 - |s_kj|)``. An inactive component is therefore returned as about ``tol / (h λ1 δ)`` with
``δ = 1 - |s_kj|/λ1`` its relative distance to switching on; :func:`zero_threshold` is this bound for a
stated ``δ``.
"""

from __future__ import annotations

from dataclasses import dataclass

import casadi as ca
import numpy as np

from ..errors import InputError, check_positive
from ..problem import Problem
from ..solution import Solution
from ..transcription import stage_function

__all__ = ["control_norm", "stopping_time", "first_time_below", "rescaled_controls", "switching_function",
           "switching_at_rest", "zero_threshold", "BangOff", "bang_off"]


def control_norm(solution: Solution, ord: float = 2) -> np.ndarray:
    """``|u_k|`` per interval (Euclidean by default; ``ord`` as in ``numpy.linalg.norm``), shape (steps,)."""
    return np.linalg.norm(solution.u, ord=ord, axis=1)


def stopping_time(solution: Solution, threshold: float = 1e-5) -> float | None:
    """``T*``: the start of the final run of intervals on which ``|u_k|_∞ <= threshold``.

    An interior-point solver returns controls at the level of its tolerance, not exact zeros:
    ``threshold`` decides what counts as zero (see :func:`zero_threshold` for a value tied to the
    tolerance). Returns ``T`` when the last interval is active, ``0`` when no interval is, never None.
    """
    threshold = check_positive("threshold", threshold)
    active = np.flatnonzero(np.abs(solution.u).max(axis=1) > threshold)
    if active.size == 0:
        return 0.0
    return float(solution.t[active[-1] + 1])


def first_time_below(t, values, epsilon: float) -> float | None:
    """The first time at which ``values <= epsilon`` (e.g. ``t_ε``, the depth to reach error ε), or None."""
    epsilon = check_positive("epsilon", epsilon)
    below = np.flatnonzero(np.asarray(values) <= epsilon)
    return float(np.asarray(t)[below[0]]) if below.size else None


def rescaled_controls(solution: Solution) -> tuple[np.ndarray, np.ndarray]:
    """``(s, T u_T(T s))`` on the interval midpoints ``s ∈ (0, 1)``: the controls on the unit horizon.

    For a field linear in u, problem ``(T, λ)`` is problem ``(1, λ/T)`` with ``u_1(s) = T u_T(T s)``.
    """
    s = 0.5 * (solution.t[:-1] + solution.t[1:]) / solution.T
    return s, solution.T * solution.u


def _check_pair(problem: Problem, solution: Solution) -> None:
    if solution.u.shape != (solution.steps, problem.nu) or solution.x[0].size != problem.nx * problem.n_samples:
        raise InputError(
            f"solution (x {solution.x.shape}, u {solution.u.shape}) does not belong to problem {problem!r}"
        )


def switching_function(problem: Problem, solution: Solution) -> np.ndarray:
    """``s_k = (1/h) ∂J_s/∂u_k`` at the solution's controls, shape (steps, nu) (see the module docstring).

    ``J_s`` is the discrete cost without the ``λ1``/``λ2`` control terms, on the solution's grid and with its
    integrator (``solution.stats["method"]``); the states are re-simulated from ``x0`` and the gradient is
    CasADi's reverse mode through that simulation, independent of the solver's multipliers.
    """
    _check_pair(problem, solution)
    N, steps = problem.n_samples, solution.steps
    step = stage_function(problem, solution.stats.get("method", "rk4")).map(N)
    U = ca.MX.sym("U", problem.nu, steps)
    h = ca.MX.sym("h")
    Y = ca.DM(problem.data_values.T)
    X = ca.DM(problem.x0_samples.T)
    J = 0
    for k in range(steps):
        X, q = step(X, U[:, k], Y, h)
        J += ca.sum2(q) / N
    J += ca.sum2(problem.terminal_cost.map(N, [False, True, False], [False])(X, U[:, -1], Y)) / N
    gradient = ca.Function("switching", [U, h], [ca.gradient(J, U)])
    return np.asarray(gradient(solution.u.T, solution.h)).T / solution.h


def switching_at_rest(problem: Problem, x, remaining: float) -> np.ndarray:
    """The switching vector ``(1/N) Σ_i f_u(x_i, 0)ᵀ p_i`` of states at rest with ``u ≡ 0`` for ``remaining`` time.

    If ``f(x, 0) = 0`` for every x (the neural-ODE fields), the states do not move once the control is
    off, the costate is ``p_i = ∇φ(x_i) + remaining · ∇L(x_i)`` and the switching vector is
    ``remaining · c_L + c_φ`` with ``c_L = (1/N) Σ_i f_u(x_i, 0)ᵀ ∇_x L(x_i, 0)`` (and ``c_φ`` alike). Under an
    L1 price λ1 the control stays off on ``(T*, T)`` iff ``|(T - t) c_L + c_φ|_∞ <= λ1`` there: the
    *stopping law* ``(T - T*) |c_L|_∞ = λ1`` for a cost without terminal term (cost (C); in the scalar case
    ``dx/dt = u``, ``L = ½(x - y)²`` it is ``r (T - T*) = λ1`` with ``r`` the final residual). On the
    transcription's grid the off interval ``[t_k, t_{k+1}]`` sees ``remaining = T - t_k - h/2`` exactly
    (Euler and RK4 alike, since ``f_x(x, 0) = 0``).

    Arguments:
        x: states (N, nx) (or (nx,) for one sample).
        remaining: ``T - t`` >= 0.

    Raises:
        InputError: if ``x`` has the wrong shape, or ``f(x, 0) != 0`` (the states are not at rest).
    """
    N, nx, nu = problem.n_samples, problem.nx, problem.nu
    x = np.asarray(x, dtype=float).reshape(N, nx) if np.size(x) == N * nx else None
    if x is None:
        raise InputError(f"x must hold {N} states of size {nx}, got shape {np.shape(x)}")
    if remaining < 0:
        raise InputError(f"remaining must be >= 0, got {remaining!r}")
    xs, u, y = ca.SX.sym("x", nx), ca.SX.sym("u", nu), ca.SX.sym("y", problem.ny)
    f = problem.dynamics(xs, u, y)
    c_L = ca.jtimes(f, u, ca.gradient(problem.running_cost(xs, u, y), xs), True)
    c_phi = ca.jtimes(f, u, ca.gradient(problem.terminal_cost(xs, u, y), xs), True)
    at_rest = ca.Function("at_rest", [xs, u, y], [f, c_L, c_phi]).map(N)
    f0, cL, cphi = (np.asarray(a) for a in at_rest(x.T, np.zeros(nu), problem.data_values.T))
    if np.abs(f0).max() > 1e-12 * (1 + np.abs(x).max()):
        raise InputError(f"the states are not at rest: |f(x, 0)|_∞ = {np.abs(f0).max():.3g} (needs f(x, 0) = 0)")
    return (remaining * cL.sum(axis=1) + cphi.sum(axis=1)) / N


def zero_threshold(tol: float, h: float, weight: float, margin: float = 1e-3) -> float:
    """``tol / (h λ1 δ)``: the size an interior-point solver leaves on an inactive L1 component (module docstring).

    A component whose switching value is at least ``δ = margin`` (relative) below the price ``λ1 = weight``
    comes back below this threshold; larger values are taken as active. Components within ``δ`` of
    switching on are genuinely ambiguous at this tolerance.
    """
    tol, h, weight, margin = (check_positive(n, v) for n, v in
                              (("tol", tol), ("h", h), ("weight", weight), ("margin", margin)))
    return tol / (h * weight * margin)


@dataclass(frozen=True)
class BangOff:
    """The structure of an L1-bounded control, interval by interval.

    ``active[k]``: number of components with ``|u_kj| > threshold``; ``saturation[k] = |u_k|_1 / M``;
    ``tied[k]``: number of components whose ``|s_kj|`` is within ``tie`` (relative) of ``max_j |s_kj|``;
    ``consistent[k]``: the active components are exactly among the tied ones (KKT);
    ``regular``: the share of active intervals with one active component.
    """

    threshold: float
    active: np.ndarray
    saturation: np.ndarray
    tied: np.ndarray
    consistent: np.ndarray

    @property
    def on(self) -> np.ndarray:
        """Intervals with an active component."""
        return self.active > 0

    @property
    def regular(self) -> float:
        return float(np.mean(self.active[self.on] == 1)) if self.on.any() else float("nan")

    def summary(self) -> dict:
        on = self.on
        return {"threshold": self.threshold, "active_intervals": int(on.sum()),
                "saturated_intervals": int(np.sum(self.saturation[on] >= 1 - 1e-6)),
                "one_active_parameter": int(np.sum(self.active == 1)),
                "active_counts": {int(n): int(np.sum(self.active == n)) for n in np.unique(self.active[on])},
                "share_regular": self.regular,
                "kkt_consistent": bool(np.all(self.consistent[on]))}


def bang_off(solution: Solution, bound: float, threshold: float, switching: np.ndarray, *,
             tie: float = 1e-4) -> BangOff:
    """Count active, saturated and tied components of ``solution.u`` (see :class:`BangOff`).

    Arguments:
        bound: ``M`` of ``|u|_1 <= M``; threshold: what counts as zero (e.g. :func:`zero_threshold`);
        switching: :func:`switching_function` of the solution; tie: relative tolerance of a tie.
    """
    bound = check_positive("bound", bound)
    threshold = check_positive("threshold", threshold)
    switching = np.asarray(switching, dtype=float)
    if switching.shape != solution.u.shape:
        raise InputError(f"switching must have the shape of the controls {solution.u.shape}, got {switching.shape}")
    on = np.abs(solution.u) > threshold
    largest = np.abs(switching).max(axis=1, keepdims=True)
    tied = np.abs(switching) >= (1 - tie) * largest
    return BangOff(threshold=threshold, active=on.sum(axis=1), saturation=np.abs(solution.u).sum(axis=1) / bound,
                   tied=tied.sum(axis=1), consistent=np.all(~on | tied, axis=1))
