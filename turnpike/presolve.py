"""A cheap first phase before the NLP solver: descent on the reduced (single-shooting) objective.

An exact-Hessian interior point certifies a KKT point but, on non-convex ensemble problems
(neural ODEs), spends many iterations far from the optimum, each costing a Hessian and a
factorisation (30-140 iterations on the two-circles problem from a random start). The reduced
objective ``J(u)`` (states eliminated by forward simulation) with its gradient by the adjoint
costs milliseconds per evaluation, so L-BFGS-B steps (at most 1000, until the relative decrease
stalls) bring the controls close to a local optimum for a fraction of the cost; the NLP solver
then starts there and certifies the optimum in a few iterations (6-7 on that problem).

The presolve only changes the starting point: convergence is still decided by the NLP solver.
From a different start a non-convex problem may reach a different local optimum.
Control bounds (and the ``u⁺, u⁻ >= 0`` of the L1 split) are kept by L-BFGS-B; the L1 bound
``|u|_1 <= M`` is not a box, so with it the presolve is skipped (reported in the stats).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

__all__ = ["PRESOLVES", "ReducedSpaceResult", "reduced_space_descent"]

PRESOLVES = ("auto", "lbfgs", "none")


@dataclass(frozen=True)
class ReducedSpaceResult:
    """The controls after the presolve and what it cost."""

    u: np.ndarray
    cost: float
    iterations: int
    evaluations: int
    seconds: float
    message: str

    def summary(self) -> dict:
        return {"method": "L-BFGS-B (reduced space)", "cost": self.cost, "iterations": self.iterations,
                "evaluations": self.evaluations, "seconds": self.seconds, "message": self.message}


def reduced_space_descent(ms, u: np.ndarray, T: float, *, max_iter: int = 1000,
                          rel_decrease: float = 1e-9) -> ReducedSpaceResult:
    """L-BFGS-B on ``J(u)`` from controls ``u`` (steps, nu), at most ``max_iter`` iterations.

    ``ms`` is a transcription (:class:`~turnpike.transcription.MultipleShooting` or
    :class:`~turnpike.reduced.ReducedSpace`): its ``reduced_objective()``, ``control_bounds()``
    and ``control_variables()`` are used.

    It stops early when an iteration decreases J by less than ``rel_decrease`` relative (scipy's
    ``ftol``): the last digits are the NLP solver's job.
    """
    start = time.perf_counter()
    if ms.problem.l1_bound is not None:
        return ReducedSpaceResult(u, np.nan, 0, 0, 0.0, "skipped: the L1 bound is not a box constraint")
    fg = ms.reduced_objective()
    p = ms.parameters(T)
    lo, hi = ms.control_bounds()
    n_v = lo.size
    bounds = list(zip(np.tile(lo, ms.steps), np.tile(hi, ms.steps), strict=True))

    def fun(v):
        J, grad = fg(v.reshape(ms.steps, n_v).T, p)
        return float(J), np.asarray(grad).T.reshape(-1)

    v0 = np.clip(ms.control_variables(u).reshape(-1), *zip(*bounds, strict=True))
    res = minimize(fun, v0, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": max_iter, "ftol": rel_decrease, "gtol": 1e-10})
    if not np.isfinite(res.fun):  # the descent left the region where the dynamics are defined
        return ReducedSpaceResult(u, np.nan, int(res.nit), int(res.nfev), time.perf_counter() - start,
                                  "discarded: non-finite cost")
    V = res.x.reshape(ms.steps, n_v)
    nu = ms.problem.nu
    u_new = V[:, :nu] - V[:, nu:] if ms.problem.split_control else V
    return ReducedSpaceResult(u_new, float(res.fun), int(res.nit), int(res.nfev), time.perf_counter() - start,
                              str(res.message))
