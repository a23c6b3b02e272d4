"""Metastability on the circle: plateaus of the cluster count over log-time, and their number against β.

Before collapsing to one cluster, tokens started uniformly on the circle (Q = K = V = I) gather into
a few clusters that survive for a time exponentially long in β (Geshkovski, Koubbi, Polyanskiy,
Rigollet, arXiv 2410.06833). The number of those clusters is predicted by the linearisation around
the uniform state: the fastest growing Fourier mode maximises ``k² I_k(β)`` (modified Bessel ``I_k``),
about ``√(2β)`` (:func:`fastest_mode`). A *plateau* is a maximal run of output times with the same
cluster count; the *metastable count* is the count of the first plateau that starts after ``t_min``
and lasts at least a factor ``min_ratio`` in time (a fixed length in log-time).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ive

from ..errors import InputError, check_positive
from .diagnostics import cluster_counts, energy
from .dynamics import CircleAttention
from .integrate import Trajectory, simulate

__all__ = ["Plateau", "plateaus", "metastable_count", "fastest_mode", "MetastableRun", "metastable_run"]


@dataclass(frozen=True)
class Plateau:
    """A maximal run of output times ``[start, end]`` with ``count`` clusters."""

    count: int
    start: float
    end: float

    @property
    def ratio(self) -> float:
        """``end / start`` (its length in log-time is ``log ratio``); inf if it starts at 0."""
        return self.end / self.start if self.start > 0 else np.inf


def plateaus(t, counts) -> list[Plateau]:
    """The maximal runs of equal ``counts`` (one count per output time ``t``)."""
    t, counts = np.asarray(t, dtype=float), np.asarray(counts)
    if t.shape != counts.shape or t.ndim != 1:
        raise InputError(f"t and counts must be 1-d of equal length, got shapes {t.shape} and {counts.shape}")
    runs, s = [], 0
    for k in range(1, len(t) + 1):
        if k == len(t) or counts[k] != counts[s]:
            runs.append(Plateau(int(counts[s]), float(t[s]), float(t[k - 1])))
            s = k
    return runs


def metastable_count(t, counts, *, min_ratio: float = 5.0, t_min: float = 1.0) -> int | None:
    """Count of the first plateau starting at ``t >= t_min`` with ``end/start >= min_ratio``; None if none."""
    min_ratio = check_positive("min_ratio", min_ratio, minimum=1.0)
    for p in plateaus(t, counts):
        if p.start >= t_min and p.ratio >= min_ratio:
            return p.count
    return None


def fastest_mode(beta: float, kmax: int = 1000) -> int:
    """``argmax_k k² I_k(β)``, the fastest growing Fourier mode around the uniform state (``ive`` scaled)."""
    beta = check_positive("beta", beta)
    k = np.arange(1, kmax + 1)
    return int(k[np.argmax(k**2 * ive(k, beta))])


@dataclass(frozen=True)
class MetastableRun:
    """A long circle run: trajectory, cluster counts and energy at every output time, plateaus."""

    beta: float
    tol: float
    trajectory: Trajectory
    counts: np.ndarray
    energy: np.ndarray
    plateaus: tuple[Plateau, ...]
    metastable_count: int | None
    collapse_time: float

    def summary(self) -> dict:
        return {
            "beta": self.beta, "tol": self.tol, "n": int(self.trajectory.x.shape[-1]),
            "metastable_count": self.metastable_count, "fastest_mode": fastest_mode(self.beta),
            "collapse_time": self.collapse_time if np.isfinite(self.collapse_time) else None,
            "plateaus": [[p.count, p.start, p.end] for p in self.plateaus if p.ratio >= 1.5],
            "field_evaluations": self.trajectory.stats["field_evaluations"],
            "seconds": self.trajectory.stats["seconds"],
        }


def metastable_run(
    n: int,
    beta: float,
    *,
    t_max: float = 1e6,
    points: int = 141,
    tol: float = 1e-2,
    kind: str = "sa",
    seed=0,
    rtol: float = 1e-6,
    atol: float = 1e-9,
) -> MetastableRun:
    """Uniform seeded start of ``n`` angles, integrated with BDF (``method="stiff"``) to ``t_max``.

    Output times: 0 and ``points`` log-spaced times in ``[0.1, t_max]``. Clusters: single linkage at
    chord ``tol``. The energy uses the same β. Collapse time: first output time with one cluster that
    stays one.
    """
    n = check_positive("n", n, integer=True)
    t_max = check_positive("t_max", t_max, minimum=0.1)
    theta0 = np.random.default_rng(seed).uniform(0.0, 2 * np.pi, n)
    t = np.concatenate([[0.0], np.logspace(-1, np.log10(t_max), check_positive("points", points, integer=True))])
    traj = simulate(CircleAttention(beta, kind=kind), theta0, t, method="stiff", rtol=rtol, atol=atol)
    pts = CircleAttention.to_points(traj.x)
    counts = cluster_counts(pts, tol)
    runs = plateaus(traj.t, counts)
    last = runs[-1]
    collapse = last.start if last.count == 1 else np.inf
    return MetastableRun(float(beta), float(tol), traj, counts, energy(pts, beta), tuple(runs),
                         metastable_count(traj.t, counts), float(collapse))
