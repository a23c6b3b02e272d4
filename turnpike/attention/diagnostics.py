"""Diagnostics of token configurations: energy, Gram matrix, clusters, collapse, leaders, equiangular ODE.

All functions take tokens ``x`` of shape ``(..., n, d)`` on the sphere (a batch of prompts in the
leading axes) unless stated otherwise; angles on the circle are turned into points with
:meth:`CircleAttention.to_points`.

* Energy (Q = K = I): ``E_β(x) = (1/(2βn²)) Σ_{i,j} e^{β<x_i, x_j>}`` (β > 0), maximal (``e^β/(2β)``)
  at a single cluster. With V = ±I its derivative along the flow is, with ``Z_i = Σ_j e^{β<x_i,x_j>}``,
  ``dE/dt = ±(1/n) Σ_i |ẋ_i|²`` (USA, a gradient flow: ``ẋ_i = ±n ∇_{x_i} E``) and
  ``dE/dt = ±(1/n²) Σ_i Z_i |ẋ_i|²`` (SA): :func:`energy_rate`.
* Equiangular start (Q = K = V = I, ``<x_i, x_j> = ρ`` for i ≠ j) stays equiangular with
  ``dρ/dt = 2 e^{βρ}(1-ρ)((n-1)ρ+1) / (e^β + (n-1)e^{βρ})`` (SA) or ``(2/n) e^{βρ}(1-ρ)((n-1)ρ+1)`` (USA):
  :func:`equiangular_rho` (derived in the test module from ``P_{x_i}`` and ``Σ_{j≠i} x_j``).
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp
from scipy.sparse.csgraph import connected_components

from ..errors import InputError, check_choice, check_finite, check_positive
from .dynamics import KINDS

__all__ = [
    "energy", "energy_rate", "gram", "pairwise_angles", "diameter", "cluster_count", "cluster_counts",
    "collapse_time", "leaders", "is_boolean", "equiangular_start", "equiangular_rho", "proximity_probability",
]


def energy(x, beta: float) -> np.ndarray:
    """``E_β = (1/(2βn²)) Σ_{i,j} e^{β<x_i, x_j>}``, shape ``x.shape[:-2]`` (β > 0)."""
    beta = check_positive("beta", beta)
    x = np.asarray(x, dtype=float)
    n = x.shape[-2]
    return np.exp(beta * gram(x)).sum(axis=(-1, -2)) / (2 * beta * n**2)


def energy_rate(x, dxdt, beta: float, *, kind: str = "sa", sign: float = 1.0) -> np.ndarray:
    """The identity for ``dE_β/dt`` along SA/USA with Q = K = I, V = sign·I (see the module docstring).

    ``dxdt`` is the field at ``x`` (physical time), so the identity is evaluated, not assumed.
    """
    check_choice("kind", kind, KINDS)
    x, v = np.asarray(x, dtype=float), np.asarray(dxdt, dtype=float)
    n = x.shape[-2]
    speed2 = np.sum(v * v, axis=-1)  # (..., n)
    if kind == "usa":
        return np.sign(sign) * speed2.sum(axis=-1) / n
    Z = np.exp(beta * gram(x)).sum(axis=-1)
    return np.sign(sign) * np.sum(Z * speed2, axis=-1) / n**2


def gram(x) -> np.ndarray:
    """Pairwise inner products ``<x_i, x_j>``, shape (..., n, n)."""
    x = np.asarray(x, dtype=float)
    return x @ np.swapaxes(x, -1, -2)


def pairwise_angles(x) -> np.ndarray:
    """Geodesic distances ``arccos <x_i, x_j>`` (radians), shape (..., n, n)."""
    return np.arccos(np.clip(gram(x), -1.0, 1.0))


def diameter(x) -> np.ndarray:
    """Largest pairwise geodesic distance, shape ``x.shape[:-2]``; all tokens lie within it of any one token."""
    return pairwise_angles(x).max(axis=(-1, -2))


def cluster_count(x, tol: float) -> np.ndarray:
    """Number of clusters: connected components of the graph ``|x_i - x_j| < tol`` (Euclidean chord).

    Single linkage at scale ``tol``; shape ``x.shape[:-2]``.
    """
    tol = check_positive("tol", tol)
    x = np.asarray(x, dtype=float)
    batch = x.shape[:-2]
    flat = x.reshape(-1, *x.shape[-2:])
    sq = np.sum(flat * flat, axis=-1)
    d2 = sq[:, :, None] + sq[:, None, :] - 2 * gram(flat)
    adj = d2 < tol**2
    out = np.array([connected_components(a, directed=False)[0] for a in adj])
    return out.reshape(batch)


def cluster_counts(x_over_time, tol: float) -> np.ndarray:
    """:func:`cluster_count` at every time of a trajectory ``(time, ..., n, d)``."""
    return np.stack([cluster_count(x, tol) for x in np.asarray(x_over_time)])


def collapse_time(t, x_over_time, tol: float) -> np.ndarray:
    """First output time from which the diameter stays below ``tol`` (radians); ``inf`` if never.

    Shape: the batch shape of the trajectory ``(time, ..., n, d)``.
    """
    t = np.asarray(t, dtype=float)
    diam = np.stack([diameter(x) for x in np.asarray(x_over_time)])  # (time, ...)
    inside = diam < tol
    # last index where it is outside; collapse is the next output time
    outside_rev = np.flip(~inside, axis=0)
    last_out = len(t) - 1 - np.argmax(outside_rev, axis=0)
    ever_out = (~inside).any(axis=0)
    idx = np.where(ever_out, last_out + 1, 0)
    return np.where(idx < len(t), t[np.minimum(idx, len(t) - 1)], np.inf)


def is_boolean(P, tol: float = 1e-2) -> bool:
    """Whether every entry of ``P`` is within ``tol`` of 0 or 1."""
    P = np.asarray(P, dtype=float)
    return bool(np.all(np.minimum(np.abs(P), np.abs(P - 1)) <= tol))


def leaders(P, tol: float = 1e-2) -> np.ndarray:
    """Indices of the columns of a (near-)Boolean attention matrix that carry mass: the *leaders*.

    In d = 1 with V = Q = K = 1 each token ends up attending to one leader (the largest token if it is
    positive, the smallest if negative).
    """
    P = np.asarray(P, dtype=float)
    if P.ndim != 2 or P.shape[0] != P.shape[1]:
        raise InputError(f"P must be a square matrix, got shape {P.shape}")
    return np.flatnonzero(P.max(axis=0) > 1 - tol)


def equiangular_start(n: int, d: int, rho0: float = 0.0) -> np.ndarray:
    """n unit vectors in R^d with ``<x_i, x_j> = ρ0`` for i ≠ j (needs d >= n and ρ0 > -1/(n-1))."""
    n = check_positive("n", n, integer=True)
    d = check_positive("d", d, integer=True)
    if d < n:
        raise InputError(f"an equiangular start of n={n} tokens needs d >= n, got d={d}")
    if not (-1.0 / max(n - 1, 1) < rho0 < 1.0):
        raise InputError(f"rho0 must lie in (-1/(n-1), 1) = ({-1 / max(n - 1, 1):.4g}, 1), got {rho0!r}")
    G = (1 - rho0) * np.eye(n) + rho0 * np.ones((n, n))
    L = np.linalg.cholesky(G)  # G = L Lᵀ: rows of L are the tokens in R^n
    x = np.zeros((n, d))
    x[:, :n] = L
    return x


def _rho_rate(kind: str, n: int, beta: float):
    if kind == "sa":
        return lambda r: 2 * np.exp(beta * r) * (1 - r) * ((n - 1) * r + 1) / (
            np.exp(beta) + (n - 1) * np.exp(beta * r))
    return lambda r: (2 / n) * np.exp(beta * r) * (1 - r) * ((n - 1) * r + 1)


def equiangular_rho(t, rho0: float, n: int, beta: float, *, kind: str = "sa", rtol: float = 1e-12,
                    atol: float = 1e-14) -> np.ndarray:
    """ρ(t) of the reduced equiangular ODE (module docstring), solved with DOP853 at ``rtol``/``atol``."""
    check_choice("kind", kind, KINDS)
    t = check_finite("t", t)
    rate = _rho_rate(kind, n, float(beta))
    out = solve_ivp(lambda _s, r: rate(r), (t[0], t[-1]), [rho0], method="DOP853", t_eval=t, rtol=rtol, atol=atol)
    return out.y[0]


def proximity_probability(x, tol: float) -> float:
    """Estimated probability that two tokens are within ``tol`` (radians) of each other.

    The fraction of unordered pairs ``i < j`` over every prompt of the batch (axes before the last two)
    with ``arccos <x_i, x_j> < tol``; exchangeable tokens make this the probability for any fixed pair.
    """
    tol = check_positive("tol", tol)
    ang = pairwise_angles(x)
    n = ang.shape[-1]
    iu = np.triu_indices(n, 1)
    return float(np.mean(ang[..., iu[0], iu[1]] < tol))
