"""Metastability on the circle: plateaus of the cluster count, their length against β, the energy staircase.

Before collapsing to one cluster, tokens on the circle (Q = K = V = I) gather into a few clusters that
survive for a time exponentially long in β (Geshkovski, Koubbi, Polyanskiy, Rigollet, *Dynamic
metastability in the self-attention model*, arXiv 2410.06833). A *plateau* is a maximal run of output
times with the same cluster count (single linkage at chord ``tol``).

* Number of clusters from a uniform start: the linearisation around the uniform state grows fastest in
  the Fourier mode maximising ``k² I_k(β)`` (modified Bessel ``I_k``), about ``√(2β)``
  (:func:`fastest_mode`); the *metastable count* is the count of the first plateau that starts after
  ``t_min`` and lasts at least a factor ``min_ratio`` in time.
* Length of a plateau against β: two clusters of equal mass, collapsed to points at angular distance θ,
  stay two points under SA, and their distance obeys exactly
  ``dθ/dt = -2 sin θ / (1 + e^{β(1 - cos θ)})`` (a token of one cluster sees the weights
  ``e^{β}`` on its own cluster and ``e^{β cos θ}`` on the other). They merge (chord < tol) after
  ``T(β) = ∫_{θ_tol}^{θ0} (1 + e^{β(1 - cos θ)}) / (2 sin θ) dθ`` (:func:`two_cluster_merge_time`),
  and Laplace's method at the upper end gives ``T ≈ e^{β(1 - cos θ0)} / (2β sin² θ0)``: the plateau
  length grows like ``e^{cβ}`` with ``c = 1 - cos θ0``, and the slope of ``log T`` against β over a
  range of mean β̄ is about ``c - 1/β̄`` (the prefactor 1/β). :func:`fit_exponent` fits ``log L = a + cβ``
  by least squares to measured plateau lengths (:func:`plateau_length`) and reports R².
* Energy staircase: ``E_β = (1/(2βn²)) Σ_{i,j} e^{β<x_i, x_j>}`` has the global maximum ``e^β/(2β)``
  (every ``<x_i, x_j> <= 1``, with equality for one cluster), :func:`max_energy`. On a plateau of
  well-separated point clusters of masses ``m_c`` it is ``(e^β/(2β)) Σ_c (m_c/n)²`` up to terms
  ``e^{-β(1 - cos θ)}``. The paper illustrates numerically that under a time rescaling the energy
  climbs a staircase to its maximum in finite time. The rescaling used here, ``s = log(t)/β``, follows
  from the estimate above: a plateau that ends at ``T ~ e^{β(1 - cos θ)}`` ends at
  ``s ≈ 1 - cos θ <= 2``, so ``E/(e^β/(2β))`` reaches 1 at a rescaled time that stays bounded as β
  grows (the bound 2 comes from the two-cluster estimate, not from a theorem).
  :class:`MetastableRun` reports ``energy_ratio = E/(e^β/(2β))`` and ``rescaled_time``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.integrate import quad
from scipy.special import ive

from ..errors import InputError, check_finite, check_nonnegative, check_positive
from .diagnostics import cluster_counts, energy
from .dynamics import CircleAttention
from .integrate import Trajectory, simulate

__all__ = ["Plateau", "plateaus", "metastable_count", "fastest_mode", "MetastableRun", "metastable_run",
           "max_energy", "clustered_start", "plateau_length", "ExponentFit", "fit_exponent",
           "two_cluster_merge_time"]


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


def max_energy(beta: float) -> float:
    """``e^β/(2β)``: the energy of one cluster, the global maximum of ``E_β`` on the sphere (β > 0)."""
    beta = check_positive("beta", beta)
    return float(np.exp(beta) / (2 * beta))


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

    @property
    def energy_ratio(self) -> np.ndarray:
        """``E_β(t) / (e^β/(2β))``: 1 exactly at one cluster (module docstring)."""
        return self.energy / max_energy(self.beta)

    @property
    def rescaled_time(self) -> np.ndarray:
        """``s = log(t)/β`` at the output times (-inf at t = 0)."""
        with np.errstate(divide="ignore"):
            return np.log(self.trajectory.t) / self.beta

    def summary(self) -> dict:
        ratio = self.energy_ratio
        long = [p for p in self.plateaus if p.ratio >= 1.5]
        t = self.trajectory.t
        return {
            "beta": self.beta, "tol": self.tol, "n": int(self.trajectory.x.shape[-1]),
            "metastable_count": self.metastable_count, "fastest_mode": fastest_mode(self.beta),
            "collapse_time": self.collapse_time if np.isfinite(self.collapse_time) else None,
            "rescaled_collapse_time": float(np.log(self.collapse_time) / self.beta)
            if 0 < self.collapse_time < np.inf else None,
            "plateaus": [[p.count, p.start, p.end] for p in long],
            "energy_ratio_on_plateaus": [float(np.mean(ratio[(t >= p.start) & (t <= p.end)])) for p in long],
            "energy_ratio_start_end": [float(ratio[0]), float(ratio[-1])],
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
    theta0=None,
) -> MetastableRun:
    """``n`` angles, uniform from ``seed`` or ``theta0``, integrated with BDF (``method="stiff"``) to ``t_max``.

    Output times: 0 and ``points`` log-spaced times in ``[0.1, t_max]``. Clusters: single linkage at
    chord ``tol``. The energy uses the same β. Collapse time: first output time with one cluster that
    stays one. BDF's clock is t itself: beyond ``t ≈ 1e13`` the steps it needs fall below float64's
    resolution of t and it stops with :class:`~turnpike.errors.SolverError` (keep ``t_max`` below it).
    """
    n = check_positive("n", n, integer=True)
    t_max = check_positive("t_max", t_max, minimum=0.1)
    if theta0 is None:
        theta0 = np.random.default_rng(seed).uniform(0.0, 2 * np.pi, n)
    else:
        theta0 = check_finite("theta0", theta0, shape=(n,))
    t = np.concatenate([[0.0], np.logspace(-1, np.log10(t_max), check_positive("points", points, integer=True))])
    traj = simulate(CircleAttention(beta, kind=kind), theta0, t, method="stiff", rtol=rtol, atol=atol)
    pts = CircleAttention.to_points(traj.x)
    counts = cluster_counts(pts, tol)
    runs = plateaus(traj.t, counts)
    last = runs[-1]
    collapse = last.start if last.count == 1 else np.inf
    return MetastableRun(float(beta), float(tol), traj, counts, energy(pts, beta), tuple(runs),
                         metastable_count(traj.t, counts), float(collapse))


def clustered_start(centres, m: int, *, spread: float = 1e-3, seed=0) -> np.ndarray:
    """``m`` angles uniform in ``[c - spread, c + spread]`` around each centre c: shape ``(len(centres)·m,)``,
    cluster after cluster."""
    centres = check_finite("centres", centres)
    if centres.ndim != 1 or centres.size < 1:
        raise InputError(f"centres must be a 1-d array of angles, got shape {centres.shape}")
    m = check_positive("m", m, integer=True)
    spread = check_positive("spread", spread)
    rng = np.random.default_rng(seed)
    return np.concatenate([c + rng.uniform(-spread, spread, m) for c in centres])


def plateau_length(run: MetastableRun, count: int) -> float:
    """``end - start`` of the longest plateau of ``run`` with ``count`` clusters; nan if there is none.

    ``start`` and ``end`` are output times (the first and last of the plateau), so the length is known to
    the spacing of the log-spaced outputs (a factor ``(t_max/0.1)^{1/points}``).
    """
    runs = [p for p in run.plateaus if p.count == count]
    return max((p.end - p.start for p in runs), default=float("nan"))


@dataclass(frozen=True)
class ExponentFit:
    """Least-squares fit ``log L = a + c β``: ``exponent`` c, ``prefactor`` ``e^a``, ``r2`` its R²."""

    betas: np.ndarray
    lengths: np.ndarray
    exponent: float
    prefactor: float
    r2: float

    def summary(self) -> dict:
        return {"betas": self.betas.tolist(), "lengths": self.lengths.tolist(), "exponent": self.exponent,
                "prefactor": self.prefactor, "r2": self.r2}


def fit_exponent(betas, lengths) -> ExponentFit:
    """Fit ``log L = a + cβ`` by least squares (unit weights in log L); R² = 1 - SS_res/SS_tot of log L."""
    b = check_finite("betas", betas)
    lengths = np.asarray(lengths, dtype=float)
    if b.ndim != 1 or b.shape != lengths.shape or b.size < 3:
        raise InputError(f"betas and lengths must be 1-d of equal length >= 3, got shapes {b.shape} and "
                         f"{lengths.shape}")
    if not np.all(np.isfinite(lengths) & (lengths > 0)):
        raise InputError(f"lengths must be finite and > 0, got {lengths.tolist()}")
    y = np.log(lengths)
    c, a = np.polyfit(b, y, 1)
    res = y - (a + c * b)
    r2 = 1.0 - float(res @ res) / float(np.sum((y - y.mean()) ** 2))
    return ExponentFit(b, lengths, float(c), float(np.exp(a)), r2)


def two_cluster_merge_time(gap: float, beta: float, tol: float = 1e-2) -> float:
    """Time for two equal point clusters at angular distance ``gap`` (SA, Q = K = V = I) to come within chord
    ``tol``: the integral of the module docstring, by adaptive quadrature (``scipy.integrate.quad``)."""
    gap = check_positive("gap", gap)
    if gap >= np.pi:
        raise InputError(f"gap must lie in (0, π): antipodal clusters are an equilibrium; got {gap!r}")
    beta = check_nonnegative("beta", beta)
    low = 2 * np.arcsin(check_positive("tol", tol) / 2)
    if low >= gap:
        return 0.0

    def integrand(th):  # (1 + e^{β(1-cos θ)}) / (2 sin θ), scaled by e^{-β(1-cos θ0)} for the quadrature
        return (np.exp(-beta * (1 - np.cos(gap))) + np.exp(beta * (np.cos(gap) - np.cos(th)))) / (2 * np.sin(th))

    value, _ = quad(integrand, low, gap, limit=200, epsrel=1e-10)
    return float(value * np.exp(beta * (1 - np.cos(gap))))
