"""Distances between a finite-horizon solution and the static optimum, and ε-tubes.

Norms (ensemble-aware). For states the distance at a grid time is the root mean square over
samples of the Euclidean distance, ``d_x(t_k) = ( (1/N) Σ_i |x_i(t_k) - x̄_i|² )^{1/2}``; for one
sample it is the Euclidean norm. The adjoint of an averaged ensemble cost carries a factor 1/N
(see :class:`~turnpike.Solution`), so adjoints are multiplied by N before the same RMS is taken:
the distance is then in the units of one sample's costate. Controls use the Euclidean norm
``|u_k - ū|``. Controls live on intervals and are placed at the interval midpoints; the adjoint
``p_{k+1}`` at ``t_{k+1}``. The *total* distance is ``d_x + d_u + d_p`` on the grid of the
adjoint, the left-hand side of the turnpike estimate ``|x - x̄| + |u - ū| + |p - p̄| <= K(e^{-μt} + e^{-μ(T-t)})``,
with ``d_x`` taken at ``t_{k+1}`` and ``d_u`` on interval k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError, check_positive
from ..solution import Solution, StaticSolution

__all__ = ["Distances", "Tube", "distances", "tube"]


@dataclass(frozen=True)
class Distances:
    """Distance curves to the static optimum; each ``(times, values)`` pair has equal length."""

    T: float
    t_state: np.ndarray
    state: np.ndarray
    t_control: np.ndarray
    control: np.ndarray
    t_adjoint: np.ndarray
    adjoint: np.ndarray

    @property
    def t_total(self) -> np.ndarray:
        return self.t_adjoint

    @property
    def total(self) -> np.ndarray:
        """``d_x(t_{k+1}) + d_u(interval k) + d_p(t_{k+1})`` for k = 0..steps-1."""
        return self.state[1:] + self.control + self.adjoint


def _rms_over_samples(diff: np.ndarray, samples: int) -> np.ndarray:
    return np.sqrt(np.sum(diff.reshape(diff.shape[0], -1) ** 2, axis=1) / samples)


def distances(solution: Solution, static: StaticSolution) -> Distances:
    """The distance curves of ``solution`` to ``static`` (norms in the module docstring)."""
    if solution.x.shape[1:] != static.x.shape or solution.u.shape[1:] != static.u.shape:
        raise InputError(
            f"static (x {static.x.shape}, u {static.u.shape}) does not match solution "
            f"(x {solution.x.shape[1:]}, u {solution.u.shape[1:]})"
        )
    samples = static.x.shape[0] if static.x.ndim == 2 else 1
    t = solution.t
    return Distances(
        T=solution.T,
        t_state=t,
        state=_rms_over_samples(solution.x - static.x, samples),
        t_control=0.5 * (t[:-1] + t[1:]),
        control=np.linalg.norm(solution.u - static.u, axis=1),
        t_adjoint=t[1:],
        adjoint=_rms_over_samples(samples * (solution.adjoint - static.adjoint), samples),
    )


@dataclass(frozen=True)
class Tube:
    """Where a distance curve stays within ``epsilon`` of the static optimum.

    ``entry`` is the first time the curve is <= ε and ``exit`` the last such time (both None if
    it never is); ``fraction`` is the share of the samples within ε, an estimate of the share of
    ``[0, T]`` spent in the tube.
    """

    epsilon: float
    entry: float | None
    exit: float | None
    fraction: float


def tube(t: np.ndarray, d: np.ndarray, epsilon: float) -> Tube:
    """The ε-tube of the curve ``d`` sampled at times ``t``."""
    epsilon = check_positive("epsilon", epsilon)
    inside = np.asarray(d) <= epsilon
    if not inside.any():
        return Tube(epsilon, None, None, 0.0)
    idx = np.flatnonzero(inside)
    return Tube(epsilon, float(t[idx[0]]), float(t[idx[-1]]), float(inside.mean()))
