"""Self-attention dynamics: tokens as interacting particles (Geshkovski, Letrouit, Polyanskiy, Rigollet).

Three systems, each a frozen dataclass with ``field(t, x)`` (vectorised over tokens and over a
batch of independent prompts: ``x`` has shape ``(..., n, d)`` or ``(..., n)`` for angles),
``project(x)`` and the conversion from the integration clock to physical time:

* :class:`SelfAttention`, tokens on the sphere S^{d-1}, ``P_x = I - x xᵀ``:

  .. math::

      \\text{SA:}\\quad
      \\dot x_i = P_{x_i}\\Big(\\frac{1}{Z_i}\\sum_j e^{\\beta\\langle Qx_i, Kx_j\\rangle} V x_j\\Big),
      \\quad Z_i = \\sum_k e^{\\beta\\langle Qx_i, Kx_k\\rangle};\\qquad
      \\text{USA: } 1/Z_i \\to 1/n .

  SA is evaluated with a per-row max-shift (log-sum-exp), exact and overflow-free for any β.
  USA is evaluated with one *global* shift ``s = β |Q|_2 |K|_2`` (``= β`` for Q = K = I), an upper
  bound of every logit on the sphere, so ``e^{logit - s} <= 1``; a per-row shift would change the
  dynamics. The physical field is ``e^{s}`` times the shifted one; with ``rescaled=True`` the
  system integrates the shifted field in a clock ``τ`` and reports ``t = e^{-s} τ`` (use it when
  ``e^{s}`` would overflow, β ≳ 700).
* :class:`CircleAttention`, the same with Q = K = V = I in d = 2 written in angles
  ``x_i = (cos θ_i, sin θ_i)``: ``dθ_i/dt = Σ_j w_ij sin(θ_j - θ_i)`` with ``w_ij`` the SA weights
  ``softmax_j(β cos(θ_i - θ_j))`` or the USA weights ``e^{β cos(θ_i - θ_j)}/n``.
* :class:`Unnormalised`, tokens in R^d: ``dx_i/dt = Σ_j P_ij V x_j`` with
  ``P_ij = softmax_j(β <Q x_i, K x_j>)``, integrated in the rescaled variable ``z = e^{-tV} x``:
  ``dz_i/dt = V Σ_j P_ij (z_j - z_i)`` with P evaluated at ``x = e^{tV} z`` (``Σ_j P_ij = 1`` and V
  commutes with ``e^{-tV}``). For symmetric positive semi-definite V, ``z`` stays bounded (each coordinate
  along an eigenvector moves toward a convex combination of the tokens' coordinates) while ``x`` grows
  like ``e^{tV}``; along a negative eigenvalue of V the rescaled tokens repel and ``z`` is unbounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import casadi as ca
import numpy as np
from scipy.linalg import expm

from ..errors import InputError, check_choice, check_finite, check_nonnegative, check_positive

__all__ = ["KINDS", "SelfAttention", "CircleAttention", "Unnormalised", "sphere_project", "random_sphere"]

KINDS = ("sa", "usa")
_MAX_EXP = 700.0  # e^700 ~ 1e304: beyond, the physical USA field overflows


def _matrix(name: str, value, d: int) -> np.ndarray | None:
    """None for the identity, else a finite (d, d) array (a scalar c means c I)."""
    if value is None:
        return None
    arr = check_finite(name, value)
    if arr.ndim == 0:
        arr = float(arr) * np.eye(d)
    if arr.shape != (d, d):
        raise InputError(f"{name} must be None (identity), a scalar or have shape ({d}, {d}), got shape {arr.shape}")
    arr.flags.writeable = False
    return arr


def _apply(M: np.ndarray | None, x: np.ndarray) -> np.ndarray:
    """``M x_i`` for every token (rows of x); the identity when M is None."""
    return x if M is None else x @ M.T


def sphere_project(x: np.ndarray) -> np.ndarray:
    """Each token (last axis) divided by its Euclidean norm."""
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def random_sphere(shape: tuple[int, ...], d: int, *, seed=0) -> np.ndarray:
    """Seeded i.i.d. uniform points on S^{d-1}, shape ``(*shape, d)`` (normalised Gaussians)."""
    d = check_positive("d", d, integer=True)
    rng = np.random.default_rng(seed)
    return sphere_project(rng.standard_normal((*tuple(shape), d)))


@dataclass(frozen=True)
class SelfAttention:
    """SA / USA dynamics on the sphere S^{d-1} (see the module docstring).

    Arguments:
        d: token dimension (>= 1; d = 1 is the two points ±1).
        beta: inverse temperature β >= 0.
        Q, K, V: (d, d) matrices, scalars (c I) or None (the identity).
        kind: ``"sa"`` (softmax-normalised) or ``"usa"`` (normalised by 1/n).
        rescaled: USA only: integrate the globally shifted field; the clock τ maps to ``t = e^{-s} τ``.
    """

    d: int
    beta: float = 1.0
    Q: np.ndarray | None = None
    K: np.ndarray | None = None
    V: np.ndarray | None = None
    kind: str = "sa"
    rescaled: bool = False
    shift: float = field(init=False)

    def __post_init__(self):
        d = check_positive("d", self.d, integer=True)
        object.__setattr__(self, "d", d)
        object.__setattr__(self, "beta", check_nonnegative("beta", self.beta))
        for name in ("Q", "K", "V"):
            object.__setattr__(self, name, _matrix(name, getattr(self, name), d))
        check_choice("kind", self.kind, KINDS)
        norm = 1.0
        for M in (self.Q, self.K):
            norm *= 1.0 if M is None else float(np.linalg.norm(M, 2))
        object.__setattr__(self, "shift", self.beta * norm)
        if self.kind == "usa" and not self.rescaled and self.shift > _MAX_EXP:
            raise InputError(
                f"beta={self.beta!r}: the USA field overflows (global shift {self.shift:.4g} > {_MAX_EXP:g}); "
                "pass rescaled=True to integrate in the clock tau = e^shift t"
            )
        if self.kind == "sa" and self.rescaled:
            raise InputError("rescaled=True is for kind='usa' (SA needs no global shift)")

    # -- the field -------------------------------------------------------------------------
    def logits(self, x: np.ndarray) -> np.ndarray:
        """``β <Q x_i, K x_j>``, shape (..., n, n)."""
        x = np.asarray(x, dtype=float)
        return self.beta * (_apply(self.Q, x) @ np.swapaxes(_apply(self.K, x), -1, -2))

    def attention(self, x: np.ndarray) -> np.ndarray:
        """The attention matrix (..., n, n): SA rows ``softmax_j``; USA ``e^{logit_ij}/n`` (``e^{logit_ij - s}/n``
        if rescaled)."""
        L = self.logits(x)
        if self.kind == "sa":
            W = np.exp(L - L.max(axis=-1, keepdims=True))
            return W / W.sum(axis=-1, keepdims=True)
        W = np.exp(L - self.shift) / L.shape[-1]
        return W if self.rescaled else W * np.exp(self.shift)

    @property
    def time_factor(self) -> float:
        """Physical time per unit of the integration clock (``e^{-s}`` for rescaled USA, else 1)."""
        return float(np.exp(-self.shift)) if self.rescaled else 1.0

    def field(self, t, x: np.ndarray) -> np.ndarray:
        """``dx/d(clock)`` for tokens ``x`` of shape (..., n, d) on the sphere (``t`` is unused)."""
        x = np.asarray(x, dtype=float)
        W = self.logits(x)
        n = W.shape[-1]
        W -= W.max(axis=-1, keepdims=True) if self.kind == "sa" else self.shift
        np.exp(W, out=W)  # in place: (..., n, n) is the largest array
        A = W @ _apply(self.V, x)
        if self.kind == "sa":
            A /= W.sum(axis=-1, keepdims=True)
        else:
            A *= (1.0 if self.rescaled else np.exp(self.shift)) / n
        A -= np.einsum("...i,...i->...", A, x)[..., None] * x
        return A

    def project(self, x: np.ndarray) -> np.ndarray:
        return sphere_project(x)

    def casadi(self, x, n: int):
        """The physical field as a CasADi expression of ``x`` (SX/MX, n*d entries, token after token).

        A constant shift ``s`` (exact for both kinds, smooth) keeps the exponentials <= 1 on the sphere.
        """
        d = self.d
        if x.numel() != n * d:
            raise InputError(f"x must have n*d = {n * d} entries, got {x.numel()}")
        X = ca.reshape(x, d, n)  # column j = token j

        def mat(M, Y):
            return Y if M is None else ca.DM(M) @ Y

        L = self.beta * (mat(self.Q, X).T @ mat(self.K, X))  # (n, n)
        W = ca.exp(L - self.shift)
        if self.kind == "sa":
            W = W / ca.repmat(ca.sum2(W), 1, n)
        else:
            W = W * (np.exp(self.shift) / n)
        A = mat(self.V, X) @ W.T  # column i = Σ_j W_ij V x_j
        proj = A - X * ca.repmat(ca.sum1(A * X), d, 1)
        return ca.reshape(proj, n * d, 1)


@dataclass(frozen=True)
class CircleAttention:
    """SA / USA with Q = K = V = I on the circle, in angles θ (..., n); see the module docstring.

    The shift β (the diagonal logit, the maximum of every row) is exact for SA and global for USA.
    """

    beta: float = 1.0
    kind: str = "sa"
    rescaled: bool = False
    shift: float = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "beta", check_nonnegative("beta", self.beta))
        check_choice("kind", self.kind, KINDS)
        object.__setattr__(self, "shift", self.beta)
        if self.kind == "usa" and not self.rescaled and self.shift > _MAX_EXP:
            raise InputError(f"beta={self.beta!r} overflows the USA field; pass rescaled=True")
        if self.kind == "sa" and self.rescaled:
            raise InputError("rescaled=True is for kind='usa' (SA needs no global shift)")

    @property
    def time_factor(self) -> float:
        return float(np.exp(-self.shift)) if self.rescaled else 1.0

    def field(self, t, theta: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        diff = theta[..., None, :] - theta[..., :, None]  # θ_j - θ_i
        W = np.exp(self.beta * (np.cos(diff) - 1.0))
        num = np.sum(W * np.sin(diff), axis=-1)
        if self.kind == "sa":
            return num / W.sum(axis=-1)
        num /= theta.shape[-1]
        return num if self.rescaled else num * np.exp(self.shift)

    def jacobian(self, theta: np.ndarray) -> np.ndarray:
        """``∂(dθ_i/dt)/∂θ_j``, shape (..., n, n), in closed form.

        With ``s_ij = sin(θ_j - θ_i)``, ``c_ij = cos(θ_j - θ_i)``, the weights ``w_ij`` and the field ``F_i``:
        SA ``J_ij = w_ij (c_ij - β s_ij (s_ij - F_i))``, USA ``J_ij = w_ij (c_ij - β s_ij²)`` for ``j ≠ i``;
        ``J_ii = -Σ_{j≠i} J_ij`` (F depends on differences of angles only).
        """
        theta = np.asarray(theta, dtype=float)
        diff = theta[..., None, :] - theta[..., :, None]  # θ_j - θ_i
        S, C = np.sin(diff), np.cos(diff)
        W = np.exp(self.beta * (C - 1.0))
        if self.kind == "sa":
            W /= W.sum(axis=-1, keepdims=True)
            F = np.sum(W * S, axis=-1, keepdims=True)
            J = W * (C - self.beta * S * (S - F))
        else:
            J = W * (C - self.beta * S * S) * ((1.0 if self.rescaled else np.exp(self.shift)) / theta.shape[-1])
        idx = np.arange(theta.shape[-1])
        J[..., idx, idx] = 0.0
        J[..., idx, idx] = -J.sum(axis=-1)
        return J

    def project(self, theta: np.ndarray) -> np.ndarray:
        return np.asarray(theta)

    @staticmethod
    def to_points(theta: np.ndarray) -> np.ndarray:
        """Angles (..., n) as points (..., n, 2) on the circle."""
        theta = np.asarray(theta, dtype=float)
        return np.stack([np.cos(theta), np.sin(theta)], axis=-1)


@dataclass(frozen=True)
class Unnormalised:
    """Tokens in R^d, ``dx_i/dt = Σ_j softmax_j(β<Qx_i, Kx_j>) V x_j``, integrated in ``z = e^{-tV} x``.

    ``field(t, z)`` is ``dz/dt``; :meth:`tokens` gives back ``x = e^{tV} z`` and :meth:`attention` the
    attention matrix at time t (per-row max-shift: the logits grow like ``e^{2t|V|}``).

    ``e^{tV}`` is ``R diag(e^{tλ}) R⁻¹`` from one eigendecomposition ``V = R diag(λ) R⁻¹`` when the
    eigenvector matrix is well conditioned (``cond(R) <= 1e4``: error ~1e-12 relative), else
    ``scipy.linalg.expm`` at every call (a defective V); ``e^t I`` for V = I.
    """

    d: int
    beta: float = 1.0
    Q: np.ndarray | None = None
    K: np.ndarray | None = None
    V: np.ndarray | None = None
    time_factor: float = field(init=False, default=1.0)
    _eig: tuple | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self):
        d = check_positive("d", self.d, integer=True)
        object.__setattr__(self, "d", d)
        object.__setattr__(self, "beta", check_nonnegative("beta", self.beta))
        for name in ("Q", "K", "V"):
            object.__setattr__(self, name, _matrix(name, getattr(self, name), d))
        if self.V is not None:
            lam, R = np.linalg.eig(self.V)
            if np.linalg.cond(R) <= 1e4:
                object.__setattr__(self, "_eig", (lam, R, np.linalg.inv(R)))

    def _expV(self, t: float) -> np.ndarray:
        if self.V is None:
            return np.exp(float(t)) * np.eye(self.d)
        if self._eig is None:
            return expm(float(t) * self.V)
        lam, R, R_inv = self._eig
        return ((R * np.exp(float(t) * lam)) @ R_inv).real

    def tokens(self, t: float, z: np.ndarray) -> np.ndarray:
        """``x = e^{tV} z`` (each token)."""
        return np.asarray(z) @ self._expV(t).T

    def attention(self, t: float, z: np.ndarray) -> np.ndarray:
        x = self.tokens(t, z)
        L = self.beta * (_apply(self.Q, x) @ np.swapaxes(_apply(self.K, x), -1, -2))
        W = np.exp(L - L.max(axis=-1, keepdims=True))
        return W / W.sum(axis=-1, keepdims=True)

    def field(self, t, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=float)
        P = self.attention(t, z)
        return _apply(self.V, P @ z - z)

    def project(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z)
