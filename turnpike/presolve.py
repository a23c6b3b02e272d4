"""A cheap first phase before the NLP solver: descent on the reduced (single-shooting) objective.

An exact-Hessian interior point certifies a KKT point but, on non-convex ensemble problems
(neural ODEs), spends many iterations far from the optimum, each costing a Hessian and a
factorisation (30-140 iterations on the two-circles problem from a random start). The reduced
objective ``J(u)`` (states eliminated by forward simulation) with its gradient by the adjoint
costs milliseconds per evaluation, so L-BFGS-B steps (at most 3000, until the relative decrease
stalls; without a dense Hessian until J settles, :data:`HANDOVER_WINDOW`) bring the controls close to a
local optimum for a fraction of the cost; the NLP solver
then starts there and certifies the optimum in a few iterations (6-7 on that problem).

When the reduced NLP has no constraints at all (no control bounds, no L1 term) and its exact
Hessian is at hand (:class:`~turnpike.reduced.ReducedSpace`), :func:`newton_refinement` follows
the L-BFGS phase: Newton steps with IPOPT's Hessian regularisation and an Armijo line search,
factorised by LAPACK's dense Cholesky (4-6x faster than IPOPT's MUMPS on these dense
matrices, with none of the interior point's per-iteration overhead), until ``‖∇J‖∞ <= 1e-10``.
Where the Hessian is indefinite it also tries a step along a direction of negative curvature, so
that it does not settle on a saddle point, which a first-order KKT check (IPOPT's) would accept.
Where it is positive definite, the next steps reuse its factorisation (chord steps, refined by a
few conjugate-gradient iterations preconditioned with it) for as long as they decrease J as the
quadratic model predicts: each costs a few gradients and triangular solves, where a new Hessian and
its factorisation cost about 30.

The presolve only changes the starting point: convergence is still decided by the NLP solver,
which then usually accepts the start at its first KKT check (0 iterations).
From a different start a non-convex problem may reach a different local optimum.
Control bounds (and the ``u⁺, u⁻ >= 0`` of the L1 split) are kept by L-BFGS-B. The L1 bound
``|u(t)|_1 <= M`` is not a box: with it the split variables of a stage lie in a capped scaled simplex
``{0 <= V <= V_max, Σ V <= M}``, onto which :func:`project_l1_ball` projects exactly, and
:func:`projected_descent` (spectral projected gradient) takes the L-BFGS phase's place.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy.optimize import OptimizeResult, minimize

from .errors import InputError

__all__ = ["BATCH", "EPOCHS", "HANDOVER_DECREASE", "HANDOVER_ITERATIONS", "HANDOVER_WINDOW", "LEARNING_RATE",
           "PRESOLVES", "ROUND_OFF_STOP", "NewtonResult", "ReducedSpaceResult",
           "augmented_lagrangian_descent", "face_newton", "minibatch_descent", "newton_refinement", "project_l1_ball",
           "projected_descent", "projected_gradient",
           "reduced_space_descent", "unconstrained"]

PRESOLVES = ("auto", "adam", "lbfgs", "none")
#: :func:`newton_refinement`'s message when the full Newton step from its last point (whose Hessian it factorised)
#: does not halve ``‖∇J‖∞`` and J cannot tell: the point is stationary to round-off.
ROUND_OFF_STOP = "stopped: J and its gradient at round-off level"

#: Without a dense Hessian (:func:`turnpike.solve.solve`'s Hessian-vector mode) L-BFGS-B hands over to Newton-CG
#: once J has decreased by less than ``HANDOVER_DECREASE`` relative over the last ``HANDOVER_WINDOW`` iterations
#: (or it stalls at round-off, or after ``HANDOVER_ITERATIONS``). A heuristic, not a test of the basin: while
#: L-BFGS-B still lowers J quickly, Newton-CG from its iterate creeps (accepted steps, J falling slowly, ``‖∇J‖∞``
#: going up and down), and near an ill-conditioned minimum it creeps wherever it starts. Measured (``python
#: benchmarks/bench_endgame.py --only handover,rule``, ``benchmarks/results/endgame.txt``, ``docs/second_order.md``),
#: tanh bottleneck on the chessboard, 16 RK4 steps, T = 5, one core:
#:
#: * width 50, 2397 points, Newton-CG preconditioned by the Gauss–Newton blocks: with 1e-4 L-BFGS-B hands over
#:   after 2793 iterations and the solve is certified in 282-285 s (a local minimum, J = 0.8514219529); with 1e-5
#:   after 3430, and the preconditioned Newton-CG follows a long valley to a lower minimum (J = 0.8508601191):
#:   397 s. Unpreconditioned, Newton-CG from the iterate after 3430 iterations had not converged after 1200 s;
#: * width 16, 200 and 600 points, starts 0-2: 1e-4, 1e-5 and at most 3000 iterations gave the same minima in
#:   48, 49 and 48 s in all (the solves' sums).
#:
#: The rule's earlier threshold was 1e-5 (measured without the preconditioner, on another path: 539 s).
HANDOVER_ITERATIONS, HANDOVER_WINDOW, HANDOVER_DECREASE = 10000, 500, 1e-4


@dataclass(frozen=True)
class ReducedSpaceResult:
    """The controls after the presolve and what it cost."""

    u: np.ndarray
    cost: float
    iterations: int
    evaluations: int
    seconds: float
    message: str
    method: str = "L-BFGS-B (reduced space)"

    def summary(self) -> dict:
        return {"method": self.method, "cost": self.cost, "iterations": self.iterations,
                "evaluations": self.evaluations, "seconds": self.seconds, "message": self.message}


def _settled(costs, window: int, rel_decrease: float) -> str | None:
    """Why a descent whose costs so far are ``costs`` (J of its iterates, the last one latest) should stop: J has
    decreased by at most ``rel_decrease`` relative over its last ``window`` iterations (``J_{k-window} - J_k <=
    rel_decrease |J_k|``); None otherwise."""
    if len(costs) > window and costs[-window - 1] - costs[-1] <= rel_decrease * abs(costs[-1]):
        return f"relative decrease over {window} iterations <= {rel_decrease:g}"
    return None


class _Watch:
    """scipy's per-iteration callback for the descents: passes each iterate to ``callback``, and ends the
    minimisation once ``stop`` gives a reason (kept in ``why``; StopIteration makes scipy return the current
    iterate), or, with a ``window``, once J has decreased by less than ``window_decrease`` relative over the last
    ``window`` iterations (``J_{k-window} - J_k <= window_decrease |J_k|``; then ``slow`` holds the message).
    ``wanted``: whether scipy needs to call it at all."""

    def __init__(self, callback, stop, window: int | None = None, window_decrease: float = 0.0):
        self.callback, self.stop, self.why, self.slow = callback, stop, None, None
        self.window, self.window_decrease = window, window_decrease
        self.costs = deque(maxlen=None if window is None else window + 1)  # J of the last window + 1 iterates
        self.wanted = callback is not None or stop is not None or window is not None

    def __call__(self, intermediate_result):  # scipy passes its OptimizeResult to a parameter of this name
        if self.callback is not None:
            self.callback(intermediate_result)
        if self.stop is not None and (why := self.stop()):
            self.why = why
            raise StopIteration
        if self.window is not None:
            self.costs.append(float(intermediate_result.fun))
            self.slow = _settled(self.costs, self.window, self.window_decrease)
            if self.slow:
                raise StopIteration


def reduced_space_descent(ms, u: np.ndarray, T: float, *, max_iter: int = 3000, rel_decrease: float = 1e-9,
                          window: int | None = None, window_decrease: float = 0.0, memory: int = 20, callback=None,
                          stop=None) -> ReducedSpaceResult:
    """L-BFGS-B on ``J(u)`` from controls ``u`` (steps, nu), at most ``max_iter`` iterations.

    ``max_iter``: an L-BFGS iteration costs one gradient, a Newton iteration a Hessian and its
    factorisation (at N = 400, 100 steps: 2.5 ms against 130 ms), so stopping L-BFGS before its
    decrease stalls leaves more Newton iterations than it saves. ``benchmarks/bench_presolve.py`` on
    the two-circles problems (median over seeds): N = 400, 5.29 s with the cap at 3000 and 7.48 s at
    1000 (3 seeds); at N = 40 and 200 L-BFGS stalls before 1000 iterations from most seeds and the
    two agree within timing noise; 10000 was no faster than 3000.

    ``memory`` is the number of (step, gradient change) pairs of the limited-memory Hessian
    approximation (scipy's ``maxcor``, 10 there). Same script: 20 against 10, N = 40 0.31 against
    0.56 s (10 seeds, 10 faster from 2, lower cost from 3), N = 200 1.52 against 2.02 s (5 seeds, 10
    faster from none, lower cost from 3), N = 400 5.29 against 4.76 s (3 seeds, 10 faster from one,
    at higher costs).

    ``ms`` is a transcription (:class:`~turnpike.transcription.MultipleShooting` or
    :class:`~turnpike.reduced.ReducedSpace`): its ``reduced_objective()``, ``control_bounds()``
    and ``control_variables()`` are used.

    It stops early when an iteration decreases J by less than ``rel_decrease`` relative (scipy's
    ``ftol``): the last digits are the NLP solver's job; and, with a ``window``, when the last ``window``
    iterations decreased it by less than ``window_decrease`` relative (``J_{k-window} - J_k <= window_decrease
    |J_k|``; :data:`HANDOVER_WINDOW`).

    ``callback``, if given, is called after every iteration as ``callback(intermediate_result)``
    with scipy's :class:`~scipy.optimize.OptimizeResult` of the iterate (``x``: the control variables
    flattened stage by stage, overwritten by later iterations, so copy it to keep it; ``fun``: J),
    e.g. to follow the cost over time. ``stop`` (a :class:`~turnpike.stopping.Stop` or any callable returning
    a reason or None) is asked after every iteration; with a reason the descent ends at its current iterate,
    and its message is ``"stopped: " + reason``.
    """
    start = time.perf_counter()
    if ms.problem.l1_bound is not None:
        return augmented_lagrangian_descent(ms, u, T, callback=callback, stop=stop)
    fg = ms.reduced_objective()
    p = ms.parameters(T)
    lo, hi = ms.control_bounds()
    n_v = lo.size
    bounds = list(zip(np.tile(lo, ms.steps), np.tile(hi, ms.steps), strict=True))

    def fun(v):
        J, grad = fg(v.reshape(ms.steps, n_v).T, p)
        return float(J), np.asarray(grad).T.reshape(-1)

    watch = _Watch(callback, stop, window, window_decrease)

    v0 = np.clip(ms.control_variables(u).reshape(-1), *zip(*bounds, strict=True))
    res = minimize(fun, v0, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": max_iter, "ftol": rel_decrease, "gtol": 1e-10, "maxcor": memory},
                   callback=watch if watch.wanted else None)
    if not np.isfinite(res.fun):  # the descent left the region where the dynamics are defined
        return ReducedSpaceResult(u, np.nan, int(res.nit), int(res.nfev), time.perf_counter() - start,
                                  "discarded: non-finite cost")
    u_new = ms.stage_controls(res.x.reshape(ms.steps, n_v))
    seconds = time.perf_counter() - start
    message = f"stopped: {watch.why}" if watch.why else watch.slow or str(res.message)
    return ReducedSpaceResult(u_new, float(res.fun), int(res.nit), int(res.nfev), seconds, message)


def project_l1_ball(V: np.ndarray, bound: float, upper) -> np.ndarray:
    """The Euclidean projection of every row of ``V`` (stages, n) onto ``{v : 0 <= v <= upper, Σ_j v_j <= bound}``.

    The projection of a row y is ``v = clip(y - τ, 0, upper)`` with the smallest ``τ >= 0`` for which
    ``Σ v <= bound`` (the KKT conditions of ``min |v - y|²/2``: τ is the multiplier of the sum). ``g(τ) =
    Σ clip(y - τ, 0, upper)`` is continuous, piecewise linear and nonincreasing, with kinks at ``y_j - upper_j``
    and ``y_j``: sorting them (``O(n log n)`` per row, all rows at once) and summing the slopes gives g at every
    kink, and τ on the piece where g crosses ``bound``, exactly (up to rounding). ``upper`` (n,) may hold +inf.
    """
    V = np.asarray(V, dtype=float)
    upper = np.broadcast_to(np.asarray(upper, dtype=float), V.shape[-1:])
    v = np.clip(V, 0.0, upper)
    over = v.sum(axis=1) > bound
    if not over.any():
        return v
    Y = V[over]
    m, n = Y.shape
    low = Y - upper  # where a component leaves its cap, as τ grows
    kinks = np.concatenate([low, Y], axis=1)
    turns = np.concatenate([-np.ones((m, n)), np.ones((m, n))], axis=1)  # the change of slope at each kink
    ahead = kinks > 0
    slope0 = -np.sum((low <= 0) & (Y > 0), axis=1)  # g's slope just right of τ = 0
    kinks = np.where(ahead, kinks, Y.max(axis=1, keepdims=True) + 1.0)  # past the last kink g is 0 < bound
    order = np.argsort(kinks, axis=1)
    t = np.take_along_axis(kinks, order, 1)
    turns = np.take_along_axis(np.where(ahead, turns, 0.0), order, 1)
    zeros = np.zeros((m, 1))
    t_prev = np.concatenate([zeros, t[:, :-1]], axis=1)
    slope = slope0[:, None] + np.concatenate([zeros, np.cumsum(turns, axis=1)[:, :-1]], axis=1)
    g = v[over].sum(axis=1, keepdims=True) + np.cumsum(slope * (t - t_prev), axis=1)
    k = np.argmax(g <= bound, axis=1)
    rows = np.arange(m)
    before = g[rows, k] - slope[rows, k] * (t[rows, k] - t_prev[rows, k])
    tau = t_prev[rows, k] + (before - bound) / -slope[rows, k]
    v[over] = np.clip(Y - tau[:, None], 0.0, upper)
    return v


def projected_gradient(V: np.ndarray, gradient: np.ndarray, bound: float, upper, where=None) -> float:
    """``‖Π(V - ∇J) - V‖∞`` (Π: :func:`project_l1_ball`): zero exactly at the first-order (KKT) points of ``J``
    over the L1 balls, the measure of stationarity that :func:`projected_descent` stops on. ``where`` (a boolean
    mask of V's shape), if given, takes the norm over those components only (0 if there are none)."""
    step = np.abs(project_l1_ball(V - gradient, bound, upper) - V)
    return float(step.max(initial=0.0, where=True if where is None else where))


#: Spectral projected gradient: the iterations of the nonmonotone line search's memory (Grippo-Lampariello-Lucidi,
#: as Birgin-Martínez-Raydan 2000 use it), its Armijo constant, and the bounds of the spectral step length.
_SPG_MEMORY, _SPG_ARMIJO, _SPG_STEP_MIN, _SPG_STEP_MAX = 10, 1e-4, 1e-10, 1e10


def projected_descent(ms, u: np.ndarray, T: float, *, max_iter: int = 20000, rel_decrease: float = 0.0,
                      gtol: float = 1e-6, callback=None, stop=None) -> ReducedSpaceResult:
    """Spectral projected gradient (Birgin, Martínez and Raydan, SIAM J. Optim. 2000) on the reduced objective
    over the L1 balls of the split controls, ``V_k = (u⁺_k, u⁻_k) ∈ {0 <= V_k <= V_max, Σ V_k <= M}``.

    With the L1 term linear in V (``λ1 h Σ V``), each step ``V + s d``, ``d = Π(V - α ∇J) - V``, with α the
    Barzilai-Borwein length ``|ΔV|²/(ΔV·Δ∇J)`` of the last step and s from a nonmonotone Armijo search (against the
    largest J of the last 10 iterates), lands on faces of the balls: stages whose ball is saturated
    (``|u|_1 = M``) and parameters that are exactly 0 are found by first-order steps, not approached as an
    interior point does. Stops when the projected gradient (:func:`projected_gradient`) is at most ``gtol``,
    when 50 iterations decrease J by less than ``rel_decrease`` relative, or after ``max_iter`` iterations.
    The exact zeros of the end point are kept (its message counts them).

    The defaults (``gtol = 1e-6``, 20000 iterations, no stop on a slow decrease) are set by the benchmark of issue
    21, two circles, N = 100, inner tanh field, cost (C) with λ = 1e-2, M = 10, T = 10, 100 RK4 steps (``python
    benchmarks/bench_neural_ode.py``): the face it identifies keeps changing for thousands of iterations (1930 of
    the 2000 split controls end at 0; after 3000 iterations 133 of them are still wrong), and IPOPT from a point
    short of it takes as many iterations as from the random start (182 from 3000 iterations); from
    ``gtol = 1e-6`` (14877 iterations, 39.6 s) it certifies in 7 (4.9 s), J = 1.21825, where IPOPT alone
    took 292 iterations and 591 s to a worse local optimum, J = 2.69932 (accuracy 0.95; same run, on a
    loaded machine).

    ``ms``: a transcription with ``reduced_objective``, ``control_bounds``, ``control_variables``; ``callback``
    and ``stop`` as for :func:`reduced_space_descent`.
    """
    start, method = time.perf_counter(), "spectral projected gradient (reduced space)"
    P = ms.problem
    if P.constant_controls:
        return ReducedSpaceResult(u, np.nan, 0, 0, 0.0, "skipped: constant controls with the L1 bound", method)
    fg, p = ms.reduced_objective(), ms.parameters(T)
    upper, bound = ms.control_bounds()[1], P.l1_bound

    def value(V):
        J, g = fg(V.T, p)
        return float(J), np.asarray(g).T

    V = project_l1_ball(ms.control_variables(u), bound, upper)
    J, g = value(V)
    if not np.isfinite(J):
        return ReducedSpaceResult(u, np.nan, 0, 1, time.perf_counter() - start, "discarded: non-finite cost", method)
    history, evaluations, message, k = [J], 1, f"{max_iter} iterations", 0
    step = 1.0 / max(projected_gradient(V, g, bound, upper), 1e-12)
    while k < max_iter:
        if projected_gradient(V, g, bound, upper) <= gtol:
            message = f"projected gradient <= {gtol:g}"
            break
        k += 1
        d = project_l1_ball(V - step * g, bound, upper) - V
        slope, reference, s = float(np.sum(g * d)), max(history[-_SPG_MEMORY:]), 1.0
        while True:
            V_new = V + s * d
            J_new, g_new = value(V_new)
            evaluations += 1
            if J_new <= reference + _SPG_ARMIJO * s * slope or s < 1e-12:
                break
            # the minimiser of the quadratic through J, slope and J_new, kept within [0.1 s, 0.5 s]
            s = float(np.clip(-0.5 * s * s * slope / (J_new - J - s * slope), 0.1 * s, 0.5 * s))
        if not np.isfinite(J_new):
            message = "stopped: non-finite cost"
            break
        dV, dg = V_new - V, g_new - g
        curvature = float(np.sum(dV * dg))
        step = float(np.clip(np.sum(dV * dV) / curvature, _SPG_STEP_MIN, _SPG_STEP_MAX)) if curvature > 0 \
            else _SPG_STEP_MAX
        V, J, g = V_new, J_new, g_new
        history.append(J)
        if callback is not None:
            callback(OptimizeResult(x=V.reshape(-1), fun=J))
        if stop is not None and (why := stop()):
            message = f"stopped: {why}"
            break
        if settled := _settled(history, 50, rel_decrease):
            message = settled
            break
    zeros = int(np.sum(V == 0))
    return ReducedSpaceResult(ms.stage_controls(V), J, k, evaluations, time.perf_counter() - start,
                              f"{message}; {zeros} of {V.size} split controls exactly 0", method)


#: :func:`face_newton`: its most Hessians, and of them the most that are indefinite on the face; the relative gap
#: ``(M - |u_k|_1) / M`` under which a stage counts as saturated; the shift (relative to the largest diagonal
#: entry, at least 1) that tells a singular positive semidefinite Hessian on the face from an indefinite one.
_FACE_HESSIANS, _FACE_INDEFINITE, _SATURATED, _SEMIDEFINITE = 15, 5, 1e-4, 1e-8
#: Without a dense Hessian the one on the face is formed by a Hessian-vector product per free control: at most this
#: many.
_FACE_PRODUCTS = 300
#: The most Hessians :func:`augmented_lagrangian_descent` spends on :func:`face_newton` in all its minimisations.
_FACE_HESSIANS_IN_ALL = 60


def _cholesky(K: np.ndarray):
    """The Cholesky factor of ``K`` for :func:`scipy.linalg.cho_solve`, or None if K is not positive definite."""
    try:
        return scipy.linalg.cho_factor(K, check_finite=False)
    except np.linalg.LinAlgError:
        return None


def _face_hessian(rs, u: np.ndarray, p: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``∇²_u J`` on the controls ``idx`` (flat indices of u): from the dense reduced Hessian, or column by column
    from exact Hessian-vector products (one per control, symmetrised)."""
    if rs.second_order == "dense":
        H = rs.control_hessian(u, p)
        return (np.triu(H) + np.triu(H, 1).T)[np.ix_(idx, idx)]
    V, H = rs.control_variables(u), np.empty((idx.size, idx.size))
    for column, i in enumerate(idx):
        e = np.zeros(u.size)
        e[i] = 1.0
        H[:, column] = rs.hessian_vector(V, p, e.reshape(u.shape)).flat[idx]
    return 0.5 * (H + H.T)


def face_newton(rs, V: np.ndarray, T: float, *, gtol: float = 1e-10, max_iter: int = _FACE_HESSIANS,
                stop=None) -> tuple[np.ndarray, float, np.ndarray, int, str]:
    """Newton's method on the face of the L1 balls that ``V`` (steps, 2 nu; feasible) lies on: the end point
    ``V`` (feasible), its J and ∇_V J, the Hessians computed and why it stopped.

    On a face the signs of the controls ``s = sign(u)`` are fixed, the zeros and the controls at a box bound
    stay where they are, and a stage whose ball is saturated keeps ``Σ_j s_j u_j = M``: J is smooth there (its
    L1 term ``λ1 h Σ s_j u_j`` is linear) and the constraints are linear, one per saturated stage, on disjoint
    variables. A stage within ``1e-4 M`` of M counts as saturated, and its free controls are first scaled onto
    ``|u_k|_1 = M`` (unless that would take one past its box bound). Each step solves ``min gᵀd + dᵀHd/2`` over
    the free controls F with ``a_kᵀ d = 0`` (``a_k = s`` on the free controls of saturated stage k): with P the
    orthogonal projector onto those d, ``(P H P + δ P + I - P) d = -P g`` by Cholesky, H the exact reduced Hessian
    (:meth:`~turnpike.reduced.ReducedSpace.control_hessian` restricted to F; in the Hessian-vector mode one exact
    product per free control, at most 300 of them), δ the smallest of ``0, ε, 100 ε, …`` (``ε = 1e-8
    max(1, max_i (PHP)_ii)``) for which the factorisation exists: ε where PHP is singular (a minimiser that is
    not unique: more controls than directions in which they move the states), more where it is indefinite. The
    step length is the first of ``1, 1/2, …`` (from at most the largest step that stays on the face's closure)
    meeting Armijo's condition; a step that reaches the closure's boundary is also taken where J does not rise
    above its round-off (a control a step of 1e-13 takes to 0 changes J by less than that), and adds what it
    reached to the face: a control becomes 0 or sits at its box bound, or a stage saturates. Stops when ``‖P
    g‖∞ <= gtol``, at the 6th indefinite Hessian, when no step decreases J, at round-off (as
    :func:`newton_refinement`), after ``max_iter`` Hessians, or on ``stop``.

    This is the endgame of :func:`augmented_lagrangian_descent`: its first-order phase finds the face (which
    stages saturate, which controls are 0) and approaches the minimiser on it linearly; on the face the problem
    is a smooth one in a few free controls (the rest are 0), where Newton converges quadratically. It is a local
    method, hence the limit on indefinite Hessians. On the workload of ``benchmarks/bench_neural_ode.py`` (seeds
    0, 1, 2 at N = 100, seed 0 at N = 1000), attempts from a point whose face was still wrong met indefinite
    Hessians at their first steps and never converged (with no limit they ran 15 steps each, to no use); the
    attempts that reached the right face's minimiser had positive definite ones from their first or, where the
    face held a few controls too many (84 free where the minimiser has 80, at N = 1000), after 4-5 regularised
    steps that set those to 0. It does not leave the face: whether the face is the right one is
    :func:`projected_gradient`'s to say at the end point. ``rs``: a :class:`~turnpike.reduced.ReducedSpace` with
    an L1 bound and no constant controls.
    """
    if rs.problem.constant_controls:
        raise InputError("face_newton: the problem has constant controls, whose ties the face does not hold")
    fg, p = rs.reduced_objective(), rs.parameters(T)
    bound, upper = rs.problem.l1_bound, rs.control_bounds()[1]
    nu = V.shape[1] // 2

    def value(u):
        J, gV = fg(rs.control_variables(u).T, p)
        gV = np.asarray(gV).T
        return float(J), np.where(u >= 0, gV[:, :nu], -gV[:, nu:])  # ∇_u J on the face (sign fixed)

    u = rs.stage_controls(V)
    s = np.sign(u)
    cap = np.where(s > 0, upper[:nu], upper[nu:])  # |u| <= cap
    free = (s != 0) & (np.abs(u) < cap)
    size = np.where(free, np.abs(u), 0.0).sum(axis=1)  # |u_k|_1 over the free controls
    with np.errstate(divide="ignore", invalid="ignore"):
        stretch = np.where(size > 0, (bound - (np.abs(u).sum(axis=1) - size)) / size, 0.0)
    saturated = (size > 0) & (np.abs(u).sum(axis=1) >= bound * (1 - _SATURATED))
    saturated &= ~np.any(free & (np.abs(u) * stretch[:, None] >= cap), axis=1)  # no cap crossed by the stretch
    u = np.where(saturated[:, None] & free, u * stretch[:, None], u)  # onto the face: |u_k|_1 = M exactly
    J, g = value(u)
    message, k, indefinite = f"{max_iter} Hessians", 0, 0

    def normals():  # a_k / |a_k| on the rows of the saturated stages, 0 elsewhere
        a = np.where(free & saturated[:, None], s, 0.0)
        return a / np.sqrt(np.maximum((a * a).sum(axis=1), 1.0))[:, None]

    def project(w):  # P w: 0 off F, and the component along a_k removed on the saturated stages
        a = normals()
        return np.where(free, w - a * (a * w).sum(axis=1)[:, None], 0.0)

    while True:
        Pg = project(g)
        if _max_abs(Pg) <= gtol:
            message = f"‖P∇J‖∞ <= {gtol:g}"
            break
        if k == max_iter or (stop is not None and (why := stop())):
            message = f"stopped: {why}" if k < max_iter else message
            break
        k += 1
        idx = np.flatnonzero(free)
        if rs.second_order != "dense" and idx.size > _FACE_PRODUCTS:
            message = f"stopped: {idx.size} free controls, over {_FACE_PRODUCTS} Hessian-vector products a step"
            break
        H = _face_hessian(rs, u, p, idx)
        # P on F is I - B Bᵀ, B the unit normals of the saturated stages as columns (disjoint rows): P H P by
        # products with B, O(|F|² · saturated stages)
        rows_of = idx // nu
        columns = np.unique(rows_of[saturated[rows_of]])
        B = (rows_of[:, None] == columns[None, :]) * normals().flat[idx][:, None]
        HB = H @ B
        K = H - B @ HB.T - HB @ B.T + B @ (B.T @ HB) @ B.T
        Pm = np.eye(idx.size) - B @ B.T
        factor, delta, diagonal = _cholesky(K + np.eye(idx.size) - Pm), 0.0, max(1.0, _max_abs(np.diag(K)))
        while factor is None and delta <= _DELTA_MAX:  # singular (a minimiser that is not unique) or indefinite
            delta = _SEMIDEFINITE * diagonal if delta == 0.0 else delta * _GROW_FIRST
            factor = _cholesky(K + delta * Pm + np.eye(idx.size) - Pm)
        indefinite += delta > _SEMIDEFINITE * diagonal
        if factor is None or indefinite > _FACE_INDEFINITE:
            message = f"stopped: the Hessian on the face was indefinite at {indefinite} steps"
            break
        d = np.zeros_like(u)
        d.flat[idx] = -scipy.linalg.cho_solve(factor, Pg.flat[idx], check_finite=False)
        slope = float(np.sum(g * d))
        # the largest step on the face's closure: no sign change, no box bound crossed, no ball overfilled
        toward = s * d
        with np.errstate(divide="ignore", invalid="ignore"):
            reach = np.where(free & (toward < 0), np.abs(u) / -toward, np.inf)
            reach = np.where(free & (toward > 0), (cap - np.abs(u)) / toward, reach)
            fill = np.where(free, toward, 0.0).sum(axis=1)
            room = np.where(~saturated & (fill > 0), (bound - np.abs(u).sum(axis=1)) / fill, np.inf)
        t_max = max(0.0, min(1.0, float(reach.min()), float(room.min())))
        t, accepted = t_max, None
        if _at_round_off(-0.5 * slope * t_max, J):  # J cannot tell: the step must halve ‖P g‖∞ or be blocked
            J_t, g_t = value(u + t * d)
            if np.isfinite(J_t) and (_halves(project(g_t), Pg) or t_max < 1.0 and _at_round_off(J_t - J, J)):
                accepted = u + t * d, J_t, g_t
        else:
            while t > 0 and t >= _MIN_STEP * t_max:
                J_t, g_t = value(u + t * d)
                if np.isfinite(J_t) and J_t <= J + _ARMIJO * t * slope:
                    accepted = u + t * d, J_t, g_t
                    break
                t /= 2
        if accepted is None:
            message = "stopped: no step length decreased J on the face"
            break
        u, J, g = accepted
        if t == t_max < 1.0:  # the step reached the face's boundary: what it reached joins the face
            at_zero = free & (toward < 0) & (reach <= t_max)
            at_cap = free & (toward > 0) & (reach <= t_max)
            u[at_zero], u[at_cap] = 0.0, s[at_cap] * cap[at_cap]
            free &= ~(at_zero | at_cap)
            saturated |= room <= t_max
            J, g = value(u)
    V = project_l1_ball(rs.control_variables(u), bound, upper)
    J, gV = fg(V.T, p)
    return V, float(J), np.asarray(gV).T, k, message


#: The augmented Lagrangian phase of :func:`augmented_lagrangian_descent`: the penalty ρ and the most minimisations.
_AL_PENALTY, _AL_OUTER = 10.0, 20


def augmented_lagrangian_descent(ms, u: np.ndarray, T: float, *, penalty: float = _AL_PENALTY,
                                 max_outer: int = _AL_OUTER, max_iter: int = 3000, memory: int = 20,
                                 gtol: float = 1e-6, callback=None, stop=None) -> ReducedSpaceResult:
    """L-BFGS-B on the augmented Lagrangian of the L1 balls, then :func:`projected_descent` from the projection of
    its end point: a first-order point of the reduced objective over the balls ``{0 <= V_k <= V_max, Σ V_k <= M}``.

    The balls' constraints ``c_k(V) = Σ_j V_kj - M <= 0`` enter the objective through the augmented Lagrangian for
    inequalities (Rockafellar; Nocedal and Wright, §17.4) ``L(V; μ, ρ) = J(V) + Σ_k (max(0, μ_k + ρ c_k)² - μ_k²)
    / (2ρ)``, continuously differentiable, minimised over the box ``0 <= V <= V_max`` by L-BFGS-B: the box is kept
    exactly, and the free variables get quasi-Newton steps where the projected gradient takes first-order steps on
    all of them. Each minimisation runs for at most ``max_iter`` iterations, until the relative decrease stalls at
    round-off (1e-15). Then ``μ_k <- max(0, μ_k + ρ c_k)`` with ρ fixed. After each minimisation the end point is
    projected onto the balls (:func:`project_l1_ball`: feasible, with exact zeros); the phase stops once the
    projected gradient there (:func:`projected_gradient`) is at most ``gtol``, or after ``max_outer``
    minimisations; the projected gradient then starts from the projected point and brings it to ``gtol`` if it is
    not there yet. Where ``ms`` has second derivatives (a :class:`~turnpike.reduced.ReducedSpace`: its dense
    Hessian, or Hessian-vector products), each projected point that is not there yet is also handed to
    :func:`face_newton`: Newton on the face the point lies on (which stages saturate, which controls are 0), to
    ``‖P∇J‖∞ <= 1e-10``. If its end point passes the projected-gradient test the face
    was the right one and the phase ends there, at a far more accurate point; if not, it is discarded and the
    minimisations go on as they would have without it (same iterates, same end point). At most 60 Hessians are
    spent on it in all; the message counts them.

    Newton on the face, measured on the workload below (``python benchmarks/bench_neural_ode.py``, seed 0; seeds 1
    and 2 by the same call with ``seed``): the phase ends after 2 minimisations instead of 4 at N = 100 (8.8-9.7
    against 11.3-13.4 s, J = 1.668089 either way), 6 instead of 9 from seed 1 (J = 1.887628) and 2 instead of 4
    from seed 2 (J = 3.436341); at N = 1000 after 2 minimisations instead of 5 (62-70 against 120-127 s, J =
    3.658889 either way). The same local minima, as the failed attempts change nothing. In the Hessian-vector mode
    (the sparse example's instance, ``examples/neural_ode_sparse.py``, T = 20 from its cold start, multiple
    shooting with ``presolve="auto"``): 98 against 110 s, 9 minimisations, J = 1.73512 either way.

    Choices measured on the problem below, seeds 0, 1, 2: a looser stop of each minimisation (relative decrease
    1e-9 or 1e-12) left 4 of 6 runs unconverged after 20 minimisations; growing ρ tenfold whenever the largest
    violation had not fallen to a quarter of the last (the textbook rule) made the subproblems ill-conditioned,
    and seed 1 did not converge in 20 minimisations (76 s).

    Measured on the workload of ``benchmarks/bench_neural_ode.py`` (two circles, N = 100, inner tanh field, cost (C)
    with λ = 1e-2, M = 10, T = 10, 100 RK4 steps) from seeds 0, 1, 2 with ρ = 10, calling this function: 9.1-20.4 s
    to a projected gradient below 1e-6 at J = 1.668, 1.888, 3.436, where the projected gradient alone stopped after
    14877 iterations (30 s) at J = 1.218 from seed 0 and had not converged after 20000 iterations (41-48 s, J =
    3.53, 1.85) from seeds 1 and 2: this landscape has many local minima, and which one a method reaches from a
    start is not the method's merit. ρ = 0.1 took from 7 to 106 s over the same seeds (in a first version, without
    the box's upper bounds).

    ``callback`` and ``stop`` as for :func:`reduced_space_descent` (the callback sees the iterates of L-BFGS-B,
    which may lie outside the balls, then those of the projected gradient).
    """
    newton = getattr(ms, "second_order", None) is not None
    method = ("augmented Lagrangian L-BFGS-B" + (" with Newton on the face" if newton else "")
              + ", then spectral projected gradient")
    start, P = time.perf_counter(), ms.problem
    if P.constant_controls:
        return ReducedSpaceResult(u, np.nan, 0, 0, 0.0, "skipped: constant controls with the L1 bound", method)
    fg, p = ms.reduced_objective(), ms.parameters(T)
    lo, upper = ms.control_bounds()
    bound, (n, n_v) = P.l1_bound, (ms.steps, lo.size)
    box = list(zip(np.tile(lo, n), np.tile(upper, n), strict=True))
    multipliers, rho, face_hessians = np.zeros(n), float(penalty), 0

    def lagrangian(v):
        V = v.reshape(n, n_v)
        J, g = fg(V.T, p)
        a = np.maximum(0.0, multipliers + rho * (V.sum(axis=1) - bound))
        value = float(J) + float(a @ a - multipliers @ multipliers) / (2 * rho)
        return value, (np.asarray(g).T + a[:, None]).reshape(-1)

    watch = _Watch(callback, stop)

    V = project_l1_ball(ms.control_variables(u), bound, upper)
    iterations = evaluations = outer = 0
    message = f"{max_outer} minimisations"
    while outer < max_outer and watch.why is None:
        outer += 1
        res = minimize(lagrangian, V.reshape(-1), jac=True, method="L-BFGS-B", bounds=box,
                       options={"maxiter": max_iter, "ftol": 1e-15, "gtol": 1e-10, "maxcor": memory},
                       callback=watch if watch.wanted else None)
        iterations, evaluations = iterations + int(res.nit), evaluations + int(res.nfev)
        if not np.isfinite(res.fun):
            return ReducedSpaceResult(u, np.nan, iterations, evaluations, time.perf_counter() - start,
                                      "discarded: non-finite cost", method)
        W = res.x.reshape(n, n_v)
        multipliers = np.maximum(0.0, multipliers + rho * (W.sum(axis=1) - bound))
        V = project_l1_ball(W, bound, upper)
        J, g = fg(V.T, p)
        evaluations += 1
        if projected_gradient(V, np.asarray(g).T, bound, upper) <= gtol:
            message = f"projected gradient <= {gtol:g} after {outer} minimisations"
            break
        if newton and watch.why is None and face_hessians < _FACE_HESSIANS_IN_ALL:
            # the face's minimiser, kept only if the face is the right one
            budget = min(_FACE_HESSIANS, _FACE_HESSIANS_IN_ALL - face_hessians)
            V_n, J_n, g_n, hessians, _ = face_newton(ms, V, T, stop=stop, max_iter=budget)
            face_hessians += hessians
            if projected_gradient(V_n, g_n, bound, upper) <= gtol:
                V, J = V_n, J_n
                message = f"projected gradient <= {gtol:g} after {outer} minimisations and Newton on the face"
                break
            if stop is not None and (why := stop()):
                watch.why = why
    newton_note = f"; Newton on the face: {face_hessians} Hessians" if newton else ""
    if watch.why is not None:
        return ReducedSpaceResult(ms.stage_controls(V), float(J), iterations, evaluations,
                                  time.perf_counter() - start, f"stopped: {watch.why}{newton_note}", method)
    polish = projected_descent(ms, ms.stage_controls(V), T, gtol=gtol, callback=callback, stop=stop)
    V = ms.control_variables(polish.u)
    return ReducedSpaceResult(polish.u, polish.cost, iterations + polish.iterations,
                              evaluations + polish.evaluations, time.perf_counter() - start,
                              f"{message}, then {polish.iterations} projected-gradient iterations "
                              f"({polish.message.split(';')[0]}); {int(np.sum(V == 0))} of {V.size} split controls "
                              f"exactly 0{newton_note}", method)


#: Minibatch Adam's defaults: epochs (passes over the samples), batch size, step size (the seed papers'
#: authors train with batches of 150 and Adam's step 1e-2).
EPOCHS, BATCH, LEARNING_RATE = 30, 150, 1e-2
_BETA1, _BETA2, _EPSILON = 0.9, 0.999, 1e-8  # Adam's moment decays and denominator guard (Kingma and Ba)


def minibatch_descent(rs, u: np.ndarray, T: float, *, epochs: int = EPOCHS, batch: int = BATCH,
                      learning_rate: float = LEARNING_RATE, seed=0, callback=None, stop=None) -> ReducedSpaceResult:
    """Adam on minibatch estimates of ``∇J`` from controls ``u`` (steps, nu): ``epochs`` passes over the
    samples, in ``N // batch`` batches (of ``batch`` samples or a few more) drawn without replacement in an
    order seeded by ``seed``.

    Each step takes the gradient of J with the ensemble terms averaged over the batch only
    (:meth:`~turnpike.reduced.ReducedSpace.minibatch_gradient`, an unbiased estimate of ∇J at
    ``batch/N`` of its cost), and Adam's update ``V ← Π(V − α m̂/(√v̂ + ε))`` with the bias-corrected
    moments ``m̂, v̂`` of the gradient (decays 0.9, 0.999), ``Π`` the projection onto the control
    bounds. Far from a minimum such steps can decrease J much faster per second than full-gradient
    ones; near one they stall at the gradient noise, which is why L-BFGS-B follows. They can also lead
    elsewhere. ``benchmarks/bench_adam.py`` (results in ``benchmarks/results/adam.txt``): on the width-50
    ReLU chessboard (N = 2397; 30 epochs in about 1 s), L-BFGS-B after Adam reaches J = 0.688 / 0.565 /
    0.5458 at 10 / 60 / 120 s against 0.979 / 0.654 / 0.5598 from the random start (seed 0; seed 1:
    0.668 / 0.548 / 0.5422 against 0.929 / 0.580 / 0.5769); with softplus Adam stops on a plateau
    (J = 5.9507, seeds 0 and 1) where L-BFGS-B alone reaches 2.01 and 3.06 in 150 s; on two circles
    (N = 1000, tanh) the certified optima after Adam are worse (0.888, 0.880 against 0.861, 0.833).

    Returns the last iterate with its exact cost J (one full evaluation). Skipped (the controls
    returned unchanged) without the compiled ensemble gradient, with fewer samples than ``2 batch``,
    or with the L1 bound. ``callback(intermediate_result)`` after every epoch, with ``x`` the control
    variables and ``fun`` the epoch's mean batch cost (an estimate of J, not J). ``stop`` (as for
    :func:`reduced_space_descent`) is asked after every batch.
    """
    start = time.perf_counter()
    method = f"Adam, batches of {batch} (reduced space)"
    N = rs.problem.n_samples
    why = ("the compiled ensemble gradient is not available" if not getattr(rs, "minibatches", False) else
           f"{N} samples, fewer than two batches of {batch}" if N < 2 * batch else
           "the L1 bound is not a box constraint" if rs.problem.l1_bound is not None else None)
    if why is not None:
        return ReducedSpaceResult(u, np.nan, 0, 0, 0.0, f"skipped: {why}", method)
    p = rs.parameters(T)
    lo, hi = (np.tile(b, rs.steps) for b in rs.control_bounds())
    V = np.clip(rs.control_variables(u).reshape(-1), lo, hi)
    m, v = np.zeros_like(V), np.zeros_like(V)
    rng = np.random.default_rng(seed)
    k, message = 0, f"{epochs} epochs"
    for epoch in range(epochs):
        costs = []
        for samples in np.array_split(rng.permutation(N), N // batch):
            J, g = rs.minibatch_gradient(V, p, np.sort(samples))
            if not np.isfinite(J):
                return ReducedSpaceResult(u, np.nan, k, k, time.perf_counter() - start,
                                          "discarded: non-finite cost", method)
            k += 1
            m = _BETA1 * m + (1 - _BETA1) * g
            v = _BETA2 * v + (1 - _BETA2) * g * g
            step = learning_rate * (m / (1 - _BETA1**k)) / (np.sqrt(v / (1 - _BETA2**k)) + _EPSILON)
            V = np.clip(V - step, lo, hi)
            costs.append(J)
            if stop is not None and stop():
                break
        if callback is not None:
            callback(OptimizeResult(x=V, fun=float(np.mean(costs))))
        if stop is not None and (why := stop()):
            message = f"stopped: {why} in epoch {epoch + 1}"
            break
    J, _ = rs._value_and_gradient(V, p)
    return ReducedSpaceResult(rs.controls(V), float(J), k, k + 1, time.perf_counter() - start, message, method)


@dataclass(frozen=True)
class NewtonResult:
    """The controls after :func:`newton_refinement` and what it cost.

    ``converged``: ``‖∇J‖∞ <= gtol`` was reached. ``iterations``: the steps taken; ``hessians``: the
    Hessians computed and factorised (the other steps were chord steps, which reused the last
    factorisation). ``regularised``: the Hessians that were not positive definite (δ > 0).
    ``negative_curvature``: the steps taken along a direction of negative curvature.
    ``positive_definite``: the last Hessian factorised without regularisation (with ``converged``, a
    second-order sufficient condition for a strict local minimum, up to the steps since).
    """

    converged: bool
    u: np.ndarray
    cost: float
    gradient_norm: float
    iterations: int
    hessians: int
    evaluations: int
    regularised: int
    negative_curvature: int
    positive_definite: bool
    seconds: float
    message: str

    def summary(self) -> dict:
        return {"method": "Newton (reduced space, LAPACK Cholesky)", "converged": self.converged,
                "cost": self.cost, "gradient_norm": self.gradient_norm, "iterations": self.iterations,
                "hessians": self.hessians, "evaluations": self.evaluations, "regularised": self.regularised,
                "negative_curvature": self.negative_curvature, "positive_definite": self.positive_definite,
                "seconds": self.seconds, "message": self.message}


def unconstrained(ms) -> bool:
    """Whether the transcription ``ms`` has an exact reduced Hessian and no constraint of any kind."""
    P = ms.problem
    lo, hi = ms.control_bounds()
    return (hasattr(ms, "hessian") and not P.split_control and P.l1_bound is None
            and bool(np.all(np.isneginf(lo)) and np.all(np.isposinf(hi))))


# IPOPT's Hessian regularisation (its options first_hessian_perturbation, perturb_inc_fact_first,
# perturb_inc_fact, perturb_dec_fact, max_hessian_perturbation)
_DELTA_FIRST, _GROW_FIRST, _GROW, _SHRINK, _DELTA_MAX = 1e-4, 100.0, 8.0, 1.0 / 3.0, 1e20
_ARMIJO, _MIN_STEP = 1e-4, 1e-10
_ROUND_OFF = 1e3 * np.finfo(float).eps  # a predicted decrease of J below this (relative) is round-off
# Negative curvature: inverse iterations, the curvature (relative to max(1, max |H_ii|)) below which a
# direction counts, and the first and largest step along it (2-norm of the change in the controls).
_INVERSE_ITERATIONS, _CURVATURE_TOL, _CURVATURE_STEP, _CURVATURE_STEP_MAX = 10, 1e-8, 1.0, 1e6
# Chord steps: accepted while J decreases by at least this fraction of the quadratic model's prediction;
# refined by at most this many conjugate-gradient iterations (one Hessian-vector product each).
_CHORD_RATIO, _CHORD_ITERATIONS = 0.5, 5


def _max_abs(a: np.ndarray) -> float:
    return float(np.max(np.abs(a)))


def _at_round_off(decrease: float, J: float) -> bool:
    """Whether the decrease of J a quadratic model predicts for a step (``-gᵀd/2`` for a Newton step)
    is below the round-off of J, a sum of N·steps terms (``1e3 eps max(1, |J|)`` on ``-gᵀd``)."""
    return decrease <= 0.5 * _ROUND_OFF * max(1.0, abs(J))


def _halves(g_new: np.ndarray, g: np.ndarray) -> bool:
    """Where J cannot tell (:func:`_at_round_off`): a step is taken if it halves ``‖∇J‖∞``."""
    return _max_abs(g_new) <= 0.5 * _max_abs(g)


def _negative_curvature(H: np.ndarray, factor, d: np.ndarray, rng: np.random.Generator):
    """A unit vector v with ``vᵀHv < 0`` and that curvature, or None.

    ``factor`` is the Cholesky factor of ``H + δI`` (δ > 0, H indefinite), whose inverse has its
    largest eigenvalues on the eigenvectors of H's most negative ones; :data:`_INVERSE_ITERATIONS`
    inverse iterations with it (two triangular solves each, no new factorisation) turn the start
    vector towards them. The start is the regularised Newton step ``d`` plus a seeded random vector:
    ``d`` alone lies in the span that the gradient reaches, and at a symmetric point (samples placed
    symmetrically, a symmetric start) the escape directions are orthogonal to it.
    """
    v = d / np.linalg.norm(d) + rng.standard_normal(d.size) / np.sqrt(d.size)
    for _ in range(_INVERSE_ITERATIONS):
        v = scipy.linalg.cho_solve(factor, v, check_finite=False)
        v /= np.linalg.norm(v)
    curvature = float(v @ scipy.linalg.blas.dsymv(1.0, H, v, lower=0))  # H: upper triangle only
    if curvature >= -_CURVATURE_TOL * max(1.0, _max_abs(np.diag(H))):
        return None
    return v, curvature


def _line_search(value_and_gradient, u, J, g, d, slope, curvature=0.0):
    """The step ``u + t d`` and its J, ∇J and the number of evaluations, or None.

    Newton (``curvature`` 0): t = 1, 1/2, … down to 1e-10 until Armijo's ``J(u + t d) <= J + 1e-4 t gᵀd``.
    Negative curvature ``dᵀHd`` (d a unit vector with ``gᵀd <= 0``): the model
    ``J + t gᵀd + t² dᵀHd / 2`` decreases without bound, so t starts at 1 and doubles while J keeps
    decreasing (up to 1e6), or halves until ``J(u + t d) <= J + 1e-4 (t gᵀd + t² dᵀHd / 2)``.
    """
    def trial(t):
        J_t, g_t = value_and_gradient(u + t * d)
        return J_t, g_t, np.isfinite(J_t) and J_t <= J + _ARMIJO * (t * slope + 0.5 * t * t * curvature)

    t = _CURVATURE_STEP if curvature < 0 else 1.0
    J_t, g_t, ok = trial(t)
    evaluations = 1
    if ok and curvature < 0:
        while 2 * t <= _CURVATURE_STEP_MAX:
            J_2, g_2, ok_2 = trial(2 * t)
            evaluations += 1
            if not (ok_2 and J_2 < J_t):
                break
            t, J_t, g_t = 2 * t, J_2, g_2
    while not ok:
        t /= 2
        if t < _MIN_STEP:
            return None
        J_t, g_t, ok = trial(t)
        evaluations += 1
    return u + t * d, J_t, g_t, t, evaluations


def _chord_step(value_and_gradient, u, J, g, factor):
    """A step from ``u`` that reuses the Cholesky factor of an earlier positive definite Hessian H_old,
    with its J and ∇J and the number of evaluations, or None with that number.

    The step d solves ``H d = -g`` (H the Hessian at ``u``) by conjugate gradients preconditioned
    with H_old, from the chord step ``d = -H_old⁻¹g``: at most :data:`_CHORD_ITERATIONS` iterations,
    each with a product ``Hv ≈ (∇J(u + εv) - g) / ε`` (forward differences, ``ε = 1e-7 max(1, ‖u‖) /
    ‖v‖``: about 7 significant digits; one more product gives the first residual), until the
    residual ``r = -g - Hd`` is below ``min(0.1, ‖g‖^½) ‖g‖`` or a direction of non-positive
    curvature appears. The step is taken whole if J decreases by at least half of what the
    quadratic model predicts, ``-gᵀd/2 + dᵀr/2`` (at round-off level, where J cannot tell: if it
    halves ``‖g‖∞``).
    """
    def solve(r):
        return scipy.linalg.cho_solve(factor, r, check_finite=False)

    def product(v):
        eps = 1e-7 * max(1.0, float(np.linalg.norm(u))) / float(np.linalg.norm(v))
        return (value_and_gradient(u + eps * v)[1] - g) / eps

    d = solve(-g)
    r = -g - product(d)
    evaluations, tolerance = 2, min(0.1, float(np.linalg.norm(g)) ** 0.5) * float(np.linalg.norm(g))
    z = solve(r)
    direction, rz = z, float(r @ z)
    for _ in range(_CHORD_ITERATIONS):
        if not np.isfinite(rz) or np.linalg.norm(r) <= tolerance:
            break
        Hp = product(direction)
        evaluations += 1
        curvature = float(direction @ Hp)
        if curvature <= 0:
            break
        alpha = rz / curvature
        d, r = d + alpha * direction, r - alpha * Hp
        z = solve(r)
        rz, rz_old = float(r @ z), rz
        direction = z + (rz / rz_old) * direction
    predicted = 0.5 * (float(d @ r) - float(g @ d))
    J_d, g_d = value_and_gradient(u + d)
    if not np.isfinite(J_d):
        return None, evaluations
    ok = _halves(g_d, g) if _at_round_off(predicted, J) else J - J_d >= _CHORD_RATIO * predicted
    return ((u + d, J_d, g_d) if ok else None), evaluations


def newton_refinement(rs, u: np.ndarray, T: float, *, max_iter: int = 200, gtol: float = 1e-10,
                      chord_steps: int = 20, verbose: bool = False, callback=None, stop=None) -> NewtonResult:
    """Newton's method on the reduced objective ``J(u)`` of an unconstrained reduced NLP, from ``u``.

    ``rs`` is a :class:`~turnpike.reduced.ReducedSpace` with :func:`unconstrained` true. Iteration k:
    ``g = ∇J(u_k)``, ``H = ∇²J(u_k)`` (exact, :meth:`~turnpike.reduced.ReducedSpace.hessian`); the step
    solves ``(H + δ I) d = -g`` with the smallest δ in ``0, δ_0, κ δ_0, …`` for which the Cholesky
    factorisation exists (IPOPT's rule: ``δ_0 = 1e-4`` the first time, then a third of the last δ;
    κ = 100 the first time, then 8); then ``u_{k+1} = u_k + α d`` with the first ``α = 1, 1/2, …``
    meeting Armijo's condition ``J(u_k + α d) <= J(u_k) + 1e-4 α gᵀd``. Near the optimum the predicted
    decrease ``-gᵀd`` falls below the round-off of J (a sum of N·steps terms); once it is below
    ``1e3 eps |J|`` the full step is taken if it halves ``‖g‖∞``, and the iteration stops otherwise.

    Saddle points: when δ > 0 the regularised step moves towards a stationary point along every
    direction whose curvature is below δ, a saddle included, and converges to it linearly (seen on
    the two-circles problems: 50 iterations ending on a saddle whose Hessian has eigenvalues down to
    -3.6e-4). So such an iteration also looks for a unit direction v of negative curvature
    (``vᵀHv < -1e-8 max(1, max_i |H_ii|)``, by inverse iteration with the factor of ``H + δI``, see
    :func:`_negative_curvature`), searches along ``±v`` (the sign with ``gᵀv <= 0``, see
    :func:`_line_search`), and keeps whichever of the two steps ends at the lower J.

    Chord steps: after a positive definite Hessian (δ = 0), up to ``chord_steps`` following steps
    reuse its Cholesky factor H_old. Each starts from the chord step ``d = -H_old⁻¹ g`` and refines
    it towards the Newton step by conjugate gradients preconditioned with H_old, on Hessian-vector
    products by differences of gradients (see :func:`_chord_step`); it is taken whole while J
    decreases by at least half of what the quadratic model predicts (near the round-off of J: while
    ``‖g‖∞`` halves); the first that does not is discarded and a new Hessian is computed where it
    started. A gradient and two triangular solves per product: a new Hessian with its factorisation
    costs about 30 of them on the two-circles problems. There (``bench_scale.py``, T = 5, random
    start 0, before and after in one session), plain chord steps took the Newton phase from 0.29 to
    0.21 s at N = 40, 0.48 to 0.40 s at N = 200 and 10.8 to 7.2 s at N = 1000 with 200 steps, to the
    same minima (``chord_steps=0`` is plain Newton); refining them by conjugate gradients then
    took it (same script) from 0.22 to 0.23 s at N = 40 (5 Hessians either way), 0.39 to 0.29 s at
    N = 200 (6 Hessians to 3) and 7.5 to 6.8 s at N = 1000 (9 to 6).

    Stops when ``‖g‖∞ <= gtol`` (converged), after ``max_iter`` steps, when no step length
    down to 1e-10 decreases J (or, at round-off, the step does not halve ``‖g‖∞``), or when J or its
    derivatives are not finite. The controls returned are the last accepted ones, so the NLP solver
    can continue from them whatever the outcome. With ``verbose``, one line per step: J,
    ``‖g‖∞``, δ and α (or the negative curvature and its step length; a chord step: J and
    ``‖g‖∞``). Random start vectors are drawn from a generator seeded with 0: the result is
    reproducible. ``callback``, if given, is called after every step as ``callback(u, J, ‖∇J‖∞)`` with u
    (steps, nu). ``stop`` (as for :func:`reduced_space_descent`) is asked before every step: with a reason
    it stops (not converged) at the last accepted controls.
    """
    start = time.perf_counter()
    fg, p = rs.reduced_objective(), rs.parameters(T)
    n, nu = u.shape
    rng = np.random.default_rng(0)

    def value_and_gradient(v):
        J, g = fg(v.reshape(n, nu).T, p)
        return float(J), np.asarray(g).T.reshape(-1)

    u = u.reshape(-1)
    J, g = value_and_gradient(u)
    iterations, hessians, evaluations, regularised, curved, delta_last, definite = 0, 0, 1, 0, 0, 0.0, False
    reusable, chords = None, 0  # the factor of the last positive definite Hessian; steps taken with it
    message = f"stopped: {max_iter} iterations"
    while iterations < max_iter:
        if not (np.isfinite(J) and np.all(np.isfinite(g))):
            message = "stopped: non-finite cost or gradient"
            break
        if _max_abs(g) <= gtol:
            message = "converged"
            break
        if stop is not None and (why := stop()):
            message = f"stopped: {why}"
            break
        if reusable is not None and chords < chord_steps:
            chord, spent = _chord_step(value_and_gradient, u, J, g, reusable)
            evaluations += spent
            if chord is not None:
                if verbose:
                    print(f"chord  {iterations:4d}  J {J:.10e}  |g|inf {_max_abs(g):.2e}", flush=True)
                u, J, g = chord
                iterations, chords = iterations + 1, chords + 1
                if callback is not None:
                    callback(u.reshape(n, nu), J, _max_abs(g))
                continue
        hessians, reusable, chords = hessians + 1, None, 0
        H = rs.hessian(u.reshape(n, nu), p)  # upper triangle: cho_factor(lower=False) reads only that
        if not np.all(np.isfinite(H)):
            message = "stopped: non-finite Hessian"
            break
        delta, factor = 0.0, None
        while factor is None and delta <= _DELTA_MAX:
            try:
                factor = scipy.linalg.cho_factor(H + delta * np.eye(n * nu) if delta else H, lower=False,
                                                 check_finite=False)
            except np.linalg.LinAlgError:
                if delta == 0.0:
                    delta = _DELTA_FIRST if delta_last == 0.0 else max(1e-20, _SHRINK * delta_last)
                else:
                    delta *= _GROW_FIRST if delta_last == 0.0 else _GROW
        if factor is None:
            message = "stopped: no regularisation made the Hessian positive definite"
            break
        definite, delta_last = delta == 0.0, delta or delta_last
        regularised += not definite
        reusable = factor if definite else None
        d = -scipy.linalg.cho_solve(factor, g, check_finite=False)
        slope = float(g @ d)
        escape = None
        if not definite and (found := _negative_curvature(H, factor, d, rng)) is not None:
            v, curvature = found
            v = -v if g @ v > 0 else v  # downhill (or level) along v
            escape = _line_search(value_and_gradient, u, J, g, v, float(g @ v), curvature)
            evaluations += escape[4] if escape else 0
        if _at_round_off(-0.5 * slope, J):  # J cannot tell: the full step must halve ‖g‖∞
            J_try, g_try = value_and_gradient(u + d)
            evaluations += 1
            step = (u + d, J_try, g_try, 1.0, 1) if np.isfinite(J_try) and _halves(g_try, g) else None
            failure = ROUND_OFF_STOP
        else:
            step = _line_search(value_and_gradient, u, J, g, d, slope)
            evaluations += step[4] if step else 0
            failure = "stopped: no step length decreased J"
        if escape is not None and (step is None or escape[1] < step[1]):
            step, curved = escape, curved + 1
            if verbose:
                print(f"newton {iterations:4d}  J {J:.10e}  |g|inf {_max_abs(g):.2e}  negative curvature "
                      f"{curvature:.1e}  t {step[3]:.3g}", flush=True)
        elif step is None:
            message = failure
            break
        elif verbose:
            print(f"newton {iterations:4d}  J {J:.10e}  |g|inf {_max_abs(g):.2e}  delta {delta:.1e}  "
                  f"alpha {step[3]:.3g}", flush=True)
        u, J, g = step[:3]
        iterations += 1
        if callback is not None:
            callback(u.reshape(n, nu), J, _max_abs(g))
    gnorm = _max_abs(g)
    converged = bool(gnorm <= gtol)
    return NewtonResult(converged, u.reshape(n, nu), J, gnorm, iterations, hessians, evaluations, regularised,
                        curved, definite, time.perf_counter() - start, "converged" if converged else message)
