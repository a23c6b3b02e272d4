"""Diagnostics of learning problems: control size, stopping time, layers to reach an error, rescaling and the
distance between rescaled controls, the switching function of problems with an exact L1 term, the cost of a given
control, controls that reach zero training error, and the sparsity bounds of cost (C) (docs/mathematics.md §5).

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

from ..errors import InputError, check_finite, check_nonnegative, check_positive
from ..problem import Problem
from ..solution import Solution
from ..solve import zero_threshold
from ..transcription import stage_function

__all__ = ["control_norm", "stopping_time", "first_time_below", "rescaled_controls", "rescaled_distance",
           "switching_function", "switching_at_rest", "zero_threshold", "BangOff", "bang_off", "discrete_cost",
           "ZeroErrorControl", "zero_error_control", "speed_limit_lower_bound", "SparsityBounds", "sparsity_bounds"]


def control_norm(solution: Solution, ord: float = 2) -> np.ndarray:
    """``|u_k|`` per interval (Euclidean by default; ``ord`` as in ``numpy.linalg.norm``), shape (steps,)."""
    return np.linalg.norm(solution.u, ord=ord, axis=1)


def stopping_time(solution: Solution, threshold: float | None = None) -> float:
    """``T*``: the start of the final run of intervals on which ``|u_k|_∞ <= threshold``.

    An interior-point solver returns controls at the level of its tolerance, not exact zeros. Where
    :func:`turnpike.solve` made them exact (``solution.stats["zeros"]["exact"]``, see
    :func:`turnpike.solve.solve_on_face` and :func:`turnpike.solve.exact_zeros`), the default ``threshold=None``
    counts exact zeros only, and T* depends on no threshold; else it is 1e-5, and ``threshold`` decides what
    counts as zero (see :func:`zero_threshold` for a value tied to the tolerance). Returns ``T`` when the last
    interval is active, ``0`` when no interval is.
    """
    if threshold is None:
        threshold = 0.0 if solution.stats.get("zeros", {}).get("exact") else 1e-5
    else:
        threshold = check_nonnegative("threshold", threshold)
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


def rescaled_distance(a, b, *, relative: bool = False) -> float:
    """``‖v_a - v_b‖_{L²(0,1)}`` for the rescaled controls ``v(s) = T u_T(T s)`` of two solutions (or
    :class:`ZeroErrorControl`: anything with a horizon ``T`` and controls ``u`` on a uniform grid).

    Under cost (A) with a field linear in u, ``v_T`` is the optimum of problem ``(1, λ/T)``, and as T grows it
    tends (along subsequences) to a minimum-norm control reaching zero training error (docs/mathematics.md §1):
    the distance between successive horizons measures that convergence. Both controls are piecewise constant
    on their own grids (``|·|`` Euclidean over the control components); the integral is exact, over the union
    of the two grids' breakpoints on ``[0, 1]``. ``relative=True`` divides by ``‖v_b‖_{L²(0,1)}``.

    Raises:
        InputError: the two solutions have different numbers of controls.
    """
    ua, ub = np.asarray(a.u, dtype=float), np.asarray(b.u, dtype=float)
    if ua.ndim != 2 or ub.ndim != 2 or ua.shape[1] != ub.shape[1] or 0 in (len(ua), len(ub)):
        raise InputError(f"a and b must hold controls (steps, nu) with the same nu, got shapes {ua.shape} and "
                         f"{ub.shape}")
    grid_a, grid_b = np.linspace(0.0, 1.0, len(ua) + 1), np.linspace(0.0, 1.0, len(ub) + 1)
    edges = np.union1d(grid_a, grid_b)
    mid = 0.5 * (edges[:-1] + edges[1:])
    ia = np.clip(np.searchsorted(grid_a, mid, side="right") - 1, 0, len(ua) - 1)
    ib = np.clip(np.searchsorted(grid_b, mid, side="right") - 1, 0, len(ub) - 1)
    gap = float(np.sqrt(np.sum(np.diff(edges) * np.sum((a.T * ua[ia] - b.T * ub[ib]) ** 2, axis=1))))
    if not relative:
        return gap
    norm = float(b.T * np.sqrt(np.mean(np.sum(ub ** 2, axis=1))))
    return gap / norm if norm > 0 else float("inf")


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
        bound: ``M`` of ``|u|_1 <= M``; threshold: what counts as zero (0 where the solve made its zeros exact,
        ``solution.stats["zeros"]["exact"]``; else e.g. :func:`zero_threshold`);
        switching: :func:`switching_function` of the solution; tie: relative tolerance of a tie.
    """
    bound = check_positive("bound", bound)
    threshold = check_nonnegative("threshold", threshold)
    switching = np.asarray(switching, dtype=float)
    if switching.shape != solution.u.shape:
        raise InputError(f"switching must have the shape of the controls {solution.u.shape}, got {switching.shape}")
    on = np.abs(solution.u) > threshold
    largest = np.abs(switching).max(axis=1, keepdims=True)
    tied = np.abs(switching) >= (1 - tie) * largest
    return BangOff(threshold=threshold, active=on.sum(axis=1), saturation=np.abs(solution.u).sum(axis=1) / bound,
                   tied=tied.sum(axis=1), consistent=np.all(~on | tied, axis=1))


# -- the cost of a given control, zero-error controls, and the sparsity bounds of cost (C) ----------------------

def _simulate(problem: Problem, u: np.ndarray, h: float, method: str) -> tuple[np.ndarray, np.ndarray, float]:
    """States at the end (N, nx), running cost per interval (steps,) (averaged over the samples) and the terminal
    cost (averaged) of the controls ``u`` (steps, nu) with ``method`` and step ``h``: the transcription's sums."""
    N = problem.n_samples
    step = stage_function(problem, method).map(N)
    Y, X = problem.data_values.T, problem.x0_samples.T
    running = np.empty(len(u))
    for k in range(len(u)):
        X, q = step(X, u[k], Y, h)
        running[k] = float(np.sum(np.asarray(q))) / N
    last = u[-1] if len(u) else np.zeros(problem.nu)
    terminal = float(np.sum(np.asarray(problem.terminal_cost.map(N)(X, last, Y)))) / N
    return np.asarray(X).T, running, terminal


def _check_controls(problem: Problem, name: str, u) -> np.ndarray:
    u = check_finite(name, u)
    if u.ndim != 2 or u.shape[1] != problem.nu or u.shape[0] == 0:
        raise InputError(f"{name} must have shape (steps, {problem.nu}) with steps >= 1, got shape {u.shape}")
    return u


def discrete_cost(problem: Problem, u, h: float, *, method: str = "rk4") -> float:
    """The objective the transcription minimises, at the controls ``u`` (steps, nu) on a grid of step ``h``:

        J = Σ_k q_k + λ1 h Σ_k |u_k|_1 + λ2 h Σ_k |u_k|² + φ(x_n, u_{n-1}),

    ``q_k`` the ``method``'s quadrature of the running cost over interval k and ``φ`` the terminal cost, both
    averaged over the samples (as in :class:`~turnpike.Problem`). At a solution's controls it is the solution's
    ``cost`` (``sol.cost``, to the solver's tolerance).

    Raises:
        InputError: ``u`` is not (steps, nu) and finite, or ``h`` is not > 0.
    """
    u = _check_controls(problem, "u", u)
    h = check_positive("h", h)
    _, running, terminal = _simulate(problem, u, h, method)
    return float(running.sum() + problem.l1 * h * np.abs(u).sum() + problem.l2 * h * np.sum(u ** 2) + terminal)


@dataclass(frozen=True)
class ZeroErrorControl:
    """A control that brings a residual ``r(x(T))`` to zero, from :func:`zero_error_control`.

    ``u`` (steps, nu) on the grid it was computed on (horizon ``T``, step ``h``); ``residual`` is
    ``|r(x(T))|_∞`` at ``u``; ``success`` says whether it is at most ``tol``; ``iterations`` counts evaluations of
    r and its Jacobian. ``energy = ∫_0^T |u|² dt`` and
    ``rescaled_energy = T ∫_0^T |u|² dt = ‖T u(T ·)‖²_{L²(0,1)}``, the norm the rescaled problem (1, λ/T) charges.
    """

    success: bool
    message: str
    u: np.ndarray
    residual: float
    iterations: int
    T: float
    h: float

    @property
    def energy(self) -> float:
        return float(self.h * np.sum(self.u ** 2))

    @property
    def rescaled_energy(self) -> float:
        return self.T * self.energy


def zero_error_control(problem: Problem, u, h: float, residual, *, method: str = "rk4", minimum_norm: bool = True,
                       components=None, l1_bound: float | None = None, tol: float = 1e-12,
                       max_iter: int = 50) -> ZeroErrorControl:
    """A control reaching ``residual(X(T)) = 0`` exactly (to ``tol``) on the grid of ``len(u)`` steps of ``h``
    (``T = len(u) h``) with ``method``, by Gauss-Newton iterations started from the controls ``u`` (steps, nu)
    (e.g. a solution's ``sol.u``, ``sol.h``, ``method=sol.stats["method"]``, or zeros).

    ``residual(X)``: the states of all samples at T as a CasADi matrix (nx, N) (one column per sample) -> the
    residual vector whose zero is zero training error (for a squared loss on outputs ``P x``: ``Xᵀ P - y``). With
    ``J`` its Jacobian with respect to the stacked controls ``v`` and ``J⁺`` the pseudo-inverse:

    * first the damped least correction ``v ← v - α J⁺ r`` (α halved until ``|r|`` decreases) until
      ``|r|_∞ <= tol`` (``minimum_norm=False`` stops here: a zero-error control near the start);
    * then, with ``minimum_norm=True``, steps along the zero set that shrink ``|v|``: remove (a fraction α of) the
      component ``(I - J⁺J) v`` that r does not see to first order, correct back to ``r = 0``, keep the step if
      ``|v|`` decreased. It stops where that component vanishes, ``v`` in the range of ``Jᵀ`` with ``r = 0``: the
      first-order condition of ``min |v|² subject to r = 0``, a (local) minimum-norm control reaching zero error.

    With ``l1_bound`` M the steps are instead linear programmes (sequential linear programming with a trust
    region ``|w - v|_∞ <= Δ``): the largest share β of the residual that ``J (w - v) = -β r`` removes within
    ``|u_k|_1 <= M`` on every interval, with the least ``|w|_1``; a step is kept if ``|r|`` falls by a tenth of
    ``β |r|`` (Δ doubles), else Δ halves; with ``minimum_norm`` it goes on while ``|v|_1`` decreases at
    ``r = 0``; a last Gauss-Newton correction on the intervals with room finishes what the LP tolerance leaves.
    The result is admissible for cost (C): the reference control of :func:`sparsity_bounds`.

    ``components``: indices of the controls that may change (default all); the others keep their values in ``u``.
    Norms: ``|v|²`` is the Euclidean norm of the controls that change (``∫_0^T |u|² dt / h``). The states are
    simulated with ``method``, so the control reaches zero error for the discrete scheme that is
    solved. A control that reaches zero error bounds the minimum norm from above: ``min ‖u‖² <= rescaled_energy``
    (for cost (A): ``E(x_T(T)) <= λ min ‖u‖²/T``). The iteration is not guaranteed to converge: ``success`` says
    whether it did, never an exception.

    Raises:
        InputError: ``u`` is not (steps, nu) and finite, ``h`` is not > 0, ``components`` are not distinct indices
            of controls, or ``residual`` does not return a vector.
    """
    u = _check_controls(problem, "u", u)
    free = np.arange(problem.nu) if components is None else np.asarray(components)
    if free.ndim != 1 or free.size == 0 or free.dtype.kind not in "iu" or len(set(free.tolist())) != free.size \
            or free.min() < 0 or free.max() >= problem.nu:
        raise InputError(f"components must be distinct indices in [0, {problem.nu}), got {components!r}")
    h = check_positive("h", h)
    tol = check_positive("tol", tol)
    max_iter = check_positive("max_iter", max_iter, integer=True)
    if l1_bound is not None:
        l1_bound = check_positive("l1_bound", l1_bound)
    N, steps = problem.n_samples, len(u)
    step = stage_function(problem, method).map(N)
    V = ca.MX.sym("V", free.size, steps)
    U = ca.MX(ca.DM(u.T))
    U[free.tolist(), :] = V
    X = ca.DM(problem.x0_samples.T)
    Y = ca.DM(problem.data_values.T)
    for k in range(steps):
        X, _ = step(X, U[:, k], Y, h)
    r = residual(X)
    if not isinstance(r, (ca.MX, ca.SX, ca.DM)) or min(r.shape) != 1:
        raise InputError(f"residual must return a CasADi vector, got {type(r).__name__} "
                         f"of shape {getattr(r, 'shape', None)}")
    v_sym = ca.vec(V)
    F = ca.Function("zero_error", [v_sym], [r, ca.jacobian(r, v_sym)])
    count = [0]

    def evaluate(v):
        count[0] += 1
        rv, J = (np.asarray(a, dtype=float) for a in F(v))
        return rv.ravel(), J

    def correct(v, mask=slice(None)):
        """Damped Gauss-Newton ``v ← v - α J⁺ r`` (α halved until |r| decreases) until ``|r|_∞ <= tol``, moving
        only the entries in ``mask``."""
        rv, J = evaluate(v)
        for _ in range(max_iter):
            if np.abs(rv).max() <= tol:
                return v, rv, True
            step_v = np.zeros_like(v)
            step_v[mask] = -np.linalg.lstsq(J[:, mask], rv, rcond=None)[0]
            for alpha in 0.5 ** np.arange(15):
                trial, (r_trial, J_trial) = v + alpha * step_v, evaluate(v + alpha * step_v)
                if np.linalg.norm(r_trial) < np.linalg.norm(rv):
                    break
            else:
                return v, rv, False
            v, rv, J = trial, r_trial, J_trial
        return v, rv, bool(np.abs(rv).max() <= tol)

    v = u[:, free].T.reshape(-1, order="F").copy()  # column-major vec of V (free, steps)
    if l1_bound is not None:
        v, rv, ok = _l1_steps(evaluate, v, u, free, l1_bound, tol, max_iter, minimum_norm)
        used = np.abs(np.delete(u, free, axis=1)).sum(axis=1) + np.abs(v.reshape(steps, free.size)).sum(axis=1)
        slack = np.repeat(used <= l1_bound * (1 - 1e-3), free.size)  # intervals with room for a final correction
        if not ok and slack.any():  # the LP solves J w = ... to its own tolerance: finish with Gauss-Newton
            polished, r_polished, ok_polished = correct(v, slack)
            used = np.abs(polished.reshape(steps, free.size)).sum(axis=1) + used - np.abs(v.reshape(steps, -1)).sum(1)
            if ok_polished and used.max() <= l1_bound:
                v, rv, ok = polished, r_polished, True
    else:
        v, rv, ok = correct(v)
    while ok and minimum_norm and l1_bound is None and count[0] < 50 * max_iter:  # shrink |v| along the zero set
        _, J = evaluate(v)
        unseen = v - np.linalg.pinv(J) @ (J @ v)  # the component of v that r does not see, to first order
        if np.linalg.norm(unseen) <= 1e-9 * (1 + np.linalg.norm(v)):
            break
        for alpha in 0.5 ** np.arange(12):
            trial, r_trial, back = correct(v - alpha * unseen)
            if back and np.linalg.norm(trial) < np.linalg.norm(v) * (1 - 1e-12):
                v, rv = trial, r_trial
                break
        else:
            break
    size = float(np.abs(rv).max())
    message = f"|r|_∞ = {size:.2g} after {count[0]} evaluations" + ("" if ok else f" (not below tol = {tol:g})")
    reached = u.copy()
    reached[:, free] = v.reshape(free.size, steps, order="F").T
    return ZeroErrorControl(ok, message, reached, size, count[0], steps * h, h)


def _l1_steps(evaluate, v, u, free, bound, tol, max_iter, minimum_norm):
    """Sequential linear programming for ``r(v) = 0`` within ``|u_k|_1 <= bound`` on every interval, with a trust
    region. Each step solves ``max β - |w|_1/(2 n M)`` subject to ``J (w - v) = -β r``, ``0 <= β <= 1``, the
    interval budgets and ``|w - v|_∞ <= Δ`` (HiGHS): the largest share of the residual the linearisation removes,
    with the least ``|w|_1``. The step is taken if ``|r|`` falls by at least a tenth of the predicted ``β |r|``
    (Δ doubles), else Δ halves; once ``|r|_∞ <= tol`` steps are taken only if ``|v|_1`` decreases with r below
    tol."""
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix, eye, hstack, vstack

    steps, n = u.shape[0], v.size
    fixed = np.abs(np.delete(u, free, axis=1)).sum(axis=1)  # the budget the fixed controls already use
    layer = np.repeat(np.arange(steps), free.size)
    budget = csr_matrix((np.ones(2 * n), (np.tile(layer, 2), np.arange(2 * n))), shape=(steps, 2 * n))
    move = hstack([eye(n), -eye(n)])
    A_ub = hstack([vstack([budget, move, -move]), csr_matrix((steps + 2 * n, 1))]).tocsr()
    cost = np.append(np.full(2 * n, 1.0 / (2 * n * bound)), -1.0)
    radius = bound
    rv, J = evaluate(v)
    for _ in range(max_iter):
        done = np.abs(rv).max() <= tol
        if (done and not minimum_norm) or radius < 1e-12 * bound:
            break
        b_ub = np.concatenate([bound - fixed, v + radius, radius - v])
        lp = linprog(cost, A_ub=A_ub, b_ub=b_ub, A_eq=np.hstack([J, -J, rv[:, None]]), b_eq=J @ v,
                     bounds=[(0, None)] * (2 * n) + [(0, 1)], method="highs")
        if lp.status != 0:
            break
        w, beta = lp.x[:n] - lp.x[n:2 * n], lp.x[-1]
        r_trial, J_trial = evaluate(w)
        if done:
            better = np.abs(r_trial).max() <= tol and np.abs(w).sum() < np.abs(v).sum() * (1 - 1e-12)
        else:
            better = np.linalg.norm(r_trial) <= (1 - 0.1 * beta) * np.linalg.norm(rv) and beta > 0
        if better:
            v, rv, J, radius = w, r_trial, J_trial, 2 * radius
        else:
            radius /= 2
    return v, rv, bool(np.abs(rv).max() <= tol)


def speed_limit_lower_bound(residuals, speed: float, h: float, steps: int, *, method: str = "rk4",
                            loss=np.square) -> float:
    """A lower bound of the running cost ``Σ_k q_k`` of every admissible control, from a speed limit.

    Hypothesis: the running cost is ``(1/N) Σ_i loss(r_i)`` of output residuals ``r_i(t)`` (``loss`` even and
    nondecreasing in ``|r|``) that no admissible control moves faster than ``speed``: ``|dr_i/dt| <= speed``.
    (The outer field ``f = w tanh(x) + b`` with output ``P = e_D`` under ``|u|_1 <= M``:
    ``|dr_i/dt| = |Σ_j w_Dj tanh(x_ij) + b_D| <= |u|_1 <= M``.) Then ``|r_i(τ)| >= max(|r_i(0)| - speed·τ, 0)``
    at every stage point of the scheme (an RK4 stage at ``t_k + c h`` lies ``c h f`` from ``x_k``, ``c`` in
    {0, ½, ½, 1}), and ``q_k`` is at least the scheme's quadrature of that lower curve: with RK4
    ``(h/6)(ℓ(t_k) + 4 ℓ(t_k + h/2) + ℓ(t_k + h))``, with midpoint ``h ℓ(t_k + h/2)``, with Euler ``h ℓ(t_k)``.

    Arguments:
        residuals: ``r_i(0)`` (N,); speed: the limit (> 0); h, steps: the grid; method: the scheme.
    """
    r0 = np.abs(check_finite("residuals", residuals)).ravel()
    speed, h = check_positive("speed", speed), check_positive("h", h)
    steps = check_positive("steps", steps, integer=True)
    nodes = {"rk4": ((0.0, 1 / 6), (0.5, 4 / 6), (1.0, 1 / 6)), "midpoint": ((0.5, 1.0),), "euler": ((0.0, 1.0),)}
    if method not in nodes:
        raise InputError(f"method must be one of {sorted(nodes)}, got {method!r}")
    t = h * np.arange(steps)
    total = 0.0
    for c, weight in nodes[method]:
        low = np.maximum(r0[None, :] - speed * (t[:, None] + c * h), 0.0)
        total += weight * h * float(np.sum(np.mean(loss(low), axis=1)))
    return total


@dataclass(frozen=True)
class SparsityBounds:
    """Bounds on a minimiser of the sparse cost (C) on ``[0, T]``, from a control that interpolates the data.

    Cost (C) on the grid (step ``h``): ``J = Σ_k q_k + λ h Σ_k |u_k|_1`` with ``|u_k|_1 <= M`` (:func:`discrete_cost`).
    ``reference_cost`` ``J_ref`` is J of the reference control followed by zeros up to T; ``running_lower`` ``L``
    a lower bound of ``Σ_k q_k`` over admissible controls (0, or :func:`speed_limit_lower_bound`).

    * ``mass``: ``h Σ_k |u_k|_1 <= (J_ref - L)/λ``;
    * ``stopping_time``: ``T* <= (J_ref - L)/(λ M) + h`` under (H3), one layer for the last, partly used one;
    * ``error_at_stop``: ``L(x(T*), 0) <= J_ref / (T - T*)``, here with the bound on ``T*`` (inf if it is not
      below T): the states rest after T*, so the running cost is constant there and ``(T - T*) L(x(T*)) <= J``.

    They hold for every admissible control whose cost is at most ``J_ref`` (a global minimiser's is), under (H1)
    ``f(x, 0) = 0`` (the states rest when the control is off) and, for ``stopping_time``, (H3) every active
    layer but the last saturated (``|u_k|_1 = M``) and no inactive layer before the last active one
    (:meth:`check` tests both on a solution). The reference reaching zero error at ``reference_time`` (the
    interpolation hypothesis (H2)) makes ``J_ref`` independent of T; ``reference_final_cost`` is its running
    cost per unit time at rest there (0 at zero error).
    """

    T: float
    h: float
    weight: float
    bound: float
    reference_time: float
    reference_cost: float
    reference_final_cost: float
    running_lower: float

    @property
    def mass(self) -> float:
        return (self.reference_cost - self.running_lower) / self.weight

    @property
    def stopping_time(self) -> float:
        return self.mass / self.bound + self.h

    @property
    def error_at_stop(self) -> float:
        gap = self.T - self.stopping_time
        return self.reference_cost / gap if gap > 0 else float("inf")

    def summary(self) -> dict:
        return {"T": self.T, "h": self.h, "lambda": self.weight, "M": self.bound,
                "reference_time": self.reference_time, "reference_cost": self.reference_cost,
                "reference_final_cost": self.reference_final_cost, "running_lower": self.running_lower,
                "mass_bound": self.mass, "stopping_time_bound": self.stopping_time,
                "error_at_stop_bound": self.error_at_stop}

    def check(self, problem: Problem, solution: Solution, threshold: float) -> dict:
        """The measured quantities of ``solution`` against the bounds, and whether the hypotheses hold there.

        ``threshold`` decides "zero" (:func:`zero_threshold`); ``stopping_time`` is :func:`stopping_time`;
        ``error_at_stop`` the running cost at rest at the final states, ``L(x(T), 0)`` averaged over the samples
        (the training error under cost (C)); ``error_at_stop_bound_measured`` is ``J_ref/(T - T*)`` with the
        measured T* (needs (H1) only); ``cost_at_most_reference`` is the hypothesis ``J <= J_ref``; ``saturated``
        and ``no_gap`` are (H3); ``at_rest`` is (H1) at the final states, ``|f(x(T), 0)|_∞ <= 1e-12 (1 + |x(T)|_∞)``.
        """
        _check_pair(problem, solution)
        if abs(solution.T - self.T) > 1e-9 * self.T or abs(solution.h - self.h) > 1e-9 * self.h:
            raise InputError(f"solution (T = {solution.T:g}, h = {solution.h:g}) is not on the grid of these bounds "
                             f"(T = {self.T:g}, h = {self.h:g})")
        threshold = check_nonnegative("threshold", threshold)
        t_star = stopping_time(solution, threshold)
        active = np.abs(solution.u).max(axis=1) > threshold
        last = int(np.flatnonzero(active)[-1]) if active.any() else -1
        l1 = np.abs(solution.u).sum(axis=1)
        N, nx = problem.n_samples, problem.nx
        x_end = solution.x[-1].reshape(N, nx)
        rest = float(np.sum(np.asarray(problem.running_cost.map(N)(x_end.T, np.zeros(problem.nu),
                                                                    problem.data_values.T)))) / N
        f0 = np.asarray(problem.dynamics.map(N)(x_end.T, np.zeros(problem.nu), problem.data_values.T))
        gap = self.T - t_star
        return {"stopping_time": t_star, "stopping_time_bound": self.stopping_time,
                "stopping_time_within": bool(t_star <= self.stopping_time + 1e-12),
                "mass": float(solution.h * l1.sum()), "mass_bound": self.mass,
                "error_at_stop": rest, "error_at_stop_bound": self.error_at_stop,
                "error_at_stop_within": bool(rest <= self.error_at_stop),
                "error_at_stop_bound_measured": self.reference_cost / gap if gap > 0 else float("inf"),
                "cost": solution.cost, "cost_at_most_reference": bool(solution.cost <= self.reference_cost),
                "saturated": bool(np.all(l1[:max(last, 0)] >= self.bound * (1 - 1e-6))),
                "no_gap": bool(np.all(active[:last + 1])),
                "at_rest": bool(np.abs(f0).max() <= 1e-12 * (1 + np.abs(x_end).max()))}


def sparsity_bounds(problem: Problem, reference, h: float, T: float, *, method: str = "rk4",
                    running_lower: float = 0.0) -> SparsityBounds:
    """The bounds of :class:`SparsityBounds` on ``[0, T]`` from ``reference``, an admissible control (k, nu) on a
    grid of step ``h`` that reaches zero training error at ``k h`` (the interpolation hypothesis).

    The argument is the cost comparison of the sparsity paper (Esteve-Yagüe and Geshkovski, *Sparse approximation
    in learning via neural ODEs*, arXiv:2102.13566; *Sparsity in long-time control of neural ODEs*, Systems &
    Control Letters 2023): the minimiser costs at most the reference followed by ``u = 0``. The constants are
    re-derived here for the discrete cost that is solved, not transcribed from the paper (docs/mathematics.md
    §5). ``J_ref`` is evaluated exactly on the grid of T with ``method`` (:func:`discrete_cost`), so the
    comparison with a discrete minimiser is exact. ``running_lower``: a lower bound of the running cost of every
    admissible control (default 0; :func:`speed_limit_lower_bound`).

    Raises:
        InputError: the problem has no L1 price or no bound M, ``reference`` is not (k, nu), finite and within
            ``|u_k|_1 <= M``, ``T`` is not a multiple of ``h`` at least ``k h``, or ``running_lower`` is negative.
    """
    if problem.l1 <= 0 or problem.l1_bound is None:
        raise InputError(f"problem must have an L1 price l1 > 0 and a bound l1_bound (cost (C)), got l1 = "
                         f"{problem.l1!r}, l1_bound = {problem.l1_bound!r}")
    reference = _check_controls(problem, "reference", reference)
    h, T = check_positive("h", h), check_positive("T", T)
    M = problem.l1_bound
    if np.abs(reference).sum(axis=1).max() > M * (1 + 1e-12):
        raise InputError(f"reference must satisfy |u_k|_1 <= M = {M:g}, got up to "
                         f"{np.abs(reference).sum(axis=1).max():.6g}")
    steps = int(round(T / h))
    if abs(steps * h - T) > 1e-9 * T or steps < len(reference):
        raise InputError(f"T = {T!r} must be a multiple of h = {h!r} and at least the reference's "
                         f"{len(reference)} steps")
    if not np.isfinite(running_lower) or running_lower < 0:
        raise InputError(f"running_lower must be a finite number >= 0, got {running_lower!r}")
    padded = np.zeros((steps, problem.nu))
    padded[: len(reference)] = reference
    _, running, _ = _simulate(problem, padded, h, method)
    cost = discrete_cost(problem, padded, h, method=method)
    final = float(running[len(reference)] / h) if steps > len(reference) else float("nan")
    return SparsityBounds(T=T, h=h, weight=problem.l1, bound=M, reference_time=len(reference) * h,
                          reference_cost=cost, reference_final_cost=final, running_lower=float(running_lower))
