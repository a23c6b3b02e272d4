"""One horizon's turnpike report: how close the optimum stays to the static one, and how fast."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..problem import Problem
from ..solution import Solution, StaticSolution
from .distances import Distances, Tube, distances, tube
from .rates import DEFAULT_FLOOR, PredictedRate, RateFit, fit_rate, predicted_rate

__all__ = ["TurnpikeReport", "turnpike_report", "DEFAULT_EPSILON"]

DEFAULT_EPSILON = 1e-3
"""Default radius of the ε-tube, in the norm of the total distance ``d_x + d_u + d_p``."""


@dataclass(frozen=True)
class TurnpikeReport:
    """The turnpike figures of one solution against the static optimum.

    ``fit`` is fitted to the total distance ``d_x + d_u + d_p`` (see
    :mod:`turnpike.analysis.distances`); ``tube`` is the ε-tube of the same curve; ``predicted``
    is None when no problem was given. ``cost_per_time`` is ``J_T / T`` and ``cost_excess`` is
    ``J_T - T J_static``, which the turnpike theory bounds independently of T.

    A failed solve (``success`` False: the horizon or the static problem did not converge) has no
    optimal value and no turnpike: :meth:`summary` gives None for its costs, rate and tube, so that
    it never feeds a value asymptotics or a rate; ``last_cost`` keeps the solver's last objective.
    """

    success: bool
    status: str
    T: float
    steps: int
    cost: float
    static_cost: float
    distances: Distances
    fit: RateFit
    tube: Tube
    predicted: PredictedRate | None

    @property
    def cost_per_time(self) -> float:
        return self.cost / self.T

    @property
    def cost_excess(self) -> float:
        return self.cost - self.T * self.static_cost

    def summary(self) -> dict:
        """The report as one flat dict of numbers and words (None where there is no value); ``rate_model`` is the
        model the rate was fitted with, ``"one-sided"`` or ``"two-sided"`` (None without a rate)."""
        pred, fit, ok = self.predicted, self.fit, self.success

        def valid(value):
            return value if ok and value is not None and np.isfinite(value) else None

        return {
            "T": self.T,
            "steps": self.steps,
            "success": ok,
            "status": self.status,
            "cost": valid(self.cost),
            "cost_per_time": valid(self.cost_per_time),
            "static_cost": self.static_cost,
            "cost_excess": valid(self.cost_excess),
            "last_cost": self.cost,
            "rate": valid(fit.rate) if fit.success else None,
            "rate_constant": valid(fit.constant) if fit.success else None,
            "rate_r2": valid(fit.r2) if fit.success else None,
            "rate_model": fit.model if ok and fit.success else None,
            "rate_points": fit.points,
            "rate_message": fit.message if ok else "no rate for a failed solve",
            "predicted_rate": pred.rate if pred is not None else None,
            "predicted_reason": pred.reason if pred is not None else "no problem given",
            "tube_epsilon": self.tube.epsilon,
            "tube_entry": valid(self.tube.entry),
            "tube_exit": valid(self.tube.exit),
            "tube_fraction": valid(self.tube.fraction),
        }


def turnpike_report(
    solution: Solution,
    static: StaticSolution,
    *,
    problem: Problem | None = None,
    predicted: PredictedRate | None = None,
    epsilon: float = DEFAULT_EPSILON,
    one_sided: bool | None = None,
    floor: float = DEFAULT_FLOOR,
) -> TurnpikeReport:
    """Distances, fitted rate, ε-tube and (with ``problem``) the predicted rate of one solution.

    ``predicted``: :func:`~turnpike.analysis.rates.predicted_rate` of ``problem`` at ``static``, if
    already computed. It does not depend on the horizon, so reports of several horizons against one
    static solution compute it once (an eigenvalue problem of size ``2 N nx``: 0.3 s at N = 200, d = 2).
    ``one_sided``: the model of :func:`~turnpike.analysis.rates.fit_rate` (None: chosen from the curve; the
    summary's ``rate_model`` says which was used).

    A non-converged solution is reported with ``success=False``; its figures describe the
    solver's last iterate, not an optimum.
    """
    if predicted is None and problem is not None:
        predicted = predicted_rate(problem, static)
    d = distances(solution, static)
    return TurnpikeReport(
        success=solution.success and static.success,
        status=solution.status if static.success else f"{solution.status}; static: {static.status}",
        T=solution.T,
        steps=solution.steps,
        cost=solution.cost,
        static_cost=static.cost,
        distances=d,
        fit=fit_rate(d.t_total, d.total, solution.T, one_sided=one_sided, floor=floor),
        tube=tube(d.t_total, d.total, epsilon),
        predicted=predicted,
    )
