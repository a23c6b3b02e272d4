"""Diagnostics of learning problems: control size, stopping time, layers to reach an error, rescaling.

Controls are piecewise constant: ``u_k`` acts on ``[t_k, t_{k+1})`` (layer k+1 of the ResNet).
"""

from __future__ import annotations

import numpy as np

from ..errors import check_positive
from ..solution import Solution

__all__ = ["control_norm", "stopping_time", "first_time_below", "rescaled_controls"]


def control_norm(solution: Solution, ord: float = 2) -> np.ndarray:
    """``|u_k|`` per interval (Euclidean by default; ``ord`` as in ``numpy.linalg.norm``), shape (steps,)."""
    return np.linalg.norm(solution.u, ord=ord, axis=1)


def stopping_time(solution: Solution, threshold: float = 1e-5) -> float | None:
    """``T*``: the start of the final run of intervals on which ``|u_k|_∞ <= threshold``.

    An interior-point solver returns controls at the level of its tolerance, not exact zeros:
    ``threshold`` decides what counts as zero (with IPOPT's ``tol = 1e-8`` the inactive controls
    of an L1 problem are typically below 1e-6, larger right next to the switch). Returns
    ``T`` when the last interval is active, ``0`` when no interval is, never None.
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
