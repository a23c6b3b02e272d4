"""Measure-to-measure interpolation as an optimal control problem (Geshkovski, Rigollet, Ruiz-Balet, arXiv 2411.04551).

Each sample of the ensemble is one input point cloud ``μ_i`` of n tokens on S^{d-1} (state: the n
tokens, token after token, ``n·d`` entries); its per-sample data is the target cloud ``ν_i``. All
clouds share the control, the piecewise-constant parameters ``θ(t) = (V, B, W, U, b)`` of the
attention + perceptron field

.. math::

    \\dot x_k = P^\\perp_{x_k}\\big( V\\, A_B[\\mu](x_k) + W (U x_k + b)_+ \\big),\\qquad
    A_B[\\mu](x) = \\frac{\\sum_j e^{\\langle Bx, x_j\\rangle} x_j}{\\sum_j e^{\\langle Bx, x_j\\rangle}},

with ``V, B`` (d, d), ``W`` (d, m), ``U`` (m, d), ``b`` (m) (m the perceptron width; ``(·)_+`` is replaced by
the softplus ``log(1 + e^z)`` unless ``activation="relu"``). The cost is

.. math::

    \\int_0^T \\Big( \\frac{c_r}{N} \\sum_i \\ell(x_i(t), \\nu_i) + \\lambda_2 |\\theta(t)|^2 \\Big) dt
    + \\frac{c_T}{N} \\sum_i \\ell(x_i(T), \\nu_i)

with the matching loss ``ℓ``: ``"pairs"``, ``(1/n) Σ_k |x_k - y_k|²`` for a fixed pairing of token k with
target atom k (an upper bound of ``W_2²``), or ``"mmd"``, the squared maximum mean discrepancy with the
Gaussian kernel ``e^{-|x-y|²/(2σ²)}`` (pairing-free). The static problem of this ensemble parks every
cloud on its target with ``θ = 0`` (where the field vanishes), which is the turnpike the optimal
parameters follow on long horizons. The field is tangent to the sphere; the transcription's RK4 steps
leave it by ``O(h^5)`` per step (no projection in the NLP).
"""

from __future__ import annotations

import casadi as ca
import numpy as np
from scipy.optimize import linear_sum_assignment

from ..errors import InputError, check_choice, check_finite, check_positive
from ..problem import Problem

__all__ = ["LOSSES", "ACTIVATIONS", "measure_matching", "transformer_field", "matching_loss", "wasserstein2",
           "parameter_count"]

LOSSES = ("pairs", "mmd")
ACTIVATIONS = ("relu", "softplus")


def parameter_count(d: int, width: int) -> int:
    """Entries of ``θ = (V, B, W, U, b)``: ``2d² + 2dm + m``."""
    return 2 * d * d + 2 * d * width + width


def transformer_field(x, theta, n: int, d: int, width: int, activation: str = "softplus"):
    """The field of the module docstring as a CasADi expression (``x``: n·d entries, ``theta``: θ)."""
    X = ca.reshape(x, d, n)  # column k = token k
    o = 0
    V = ca.reshape(theta[o:o + d * d], d, d)
    o += d * d
    B = ca.reshape(theta[o:o + d * d], d, d)
    o += d * d
    W = ca.reshape(theta[o:o + d * width], d, width)
    o += d * width
    U = ca.reshape(theta[o:o + width * d], width, d)
    o += width * d
    b = theta[o:o + width]
    # |<B x_k, x_j>| <= |B|_F on the sphere: the smooth shift sqrt(|B|_F² + 1) keeps every exponential <= 1
    E = ca.exp((B @ X).T @ X - ca.sqrt(ca.sumsqr(B) + 1))  # E_kj ∝ e^{<B x_k, x_j>}
    A = (X @ E.T) / ca.repmat(ca.sum2(E).T, d, 1)  # column k = A_B[μ](x_k)
    pre = U @ X + ca.repmat(b, 1, n)
    if activation == "relu":
        act = ca.fmax(pre, 0)
    else:  # softplus without overflow: max(z, 0) + log(1 + e^{-|z|})
        act = ca.fmax(pre, 0) + ca.log1p(ca.exp(-ca.fabs(pre)))
    F = V @ A + W @ act
    F = F - X * ca.repmat(ca.sum1(F * X), d, 1)
    return ca.reshape(F, n * d, 1)


def _loss_expr(x, y, n: int, d: int, loss: str, bandwidth: float):
    X, Y = ca.reshape(x, d, n), ca.reshape(y, d, n)
    if loss == "pairs":
        return ca.sumsqr(X - Y) / n

    def k(A, Bm):
        sq = ca.repmat(ca.sum1(A * A).T, 1, n) + ca.repmat(ca.sum1(Bm * Bm), n, 1) - 2 * A.T @ Bm
        return ca.sum1(ca.sum2(ca.exp(-sq / (2 * bandwidth**2)))) / n**2

    return k(X, X) + k(Y, Y) - 2 * k(X, Y)


def matching_loss(x, y, *, loss: str = "pairs", bandwidth: float = 0.5) -> np.ndarray:
    """``ℓ(x, y)`` of the module docstring for numeric clouds (..., n, d); shape ``x.shape[:-2]``."""
    check_choice("loss", loss, LOSSES)
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = x.shape[-2]
    if loss == "pairs":
        return np.sum((x - y) ** 2, axis=(-1, -2)) / n

    def k(a, c):
        sq = np.sum((a[..., :, None, :] - c[..., None, :, :]) ** 2, axis=-1)
        return np.exp(-sq / (2 * bandwidth**2)).mean(axis=(-1, -2))

    return k(x, x) + k(y, y) - 2 * k(x, y)


def wasserstein2(x, y) -> float:
    """``W_2`` between the uniform measures on the rows of x and y (equal sizes): optimal assignment."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 2 or x.shape != y.shape:
        raise InputError(f"x and y must be clouds of the same shape (n, d), got {x.shape} and {y.shape}")
    cost = np.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)
    r, c = linear_sum_assignment(cost)
    return float(np.sqrt(cost[r, c].mean()))


def measure_matching(
    inputs,
    targets,
    *,
    width: int = 2,
    loss: str = "pairs",
    activation: str = "softplus",
    running: float = 1.0,
    terminal: float = 1.0,
    l2: float = 1e-3,
    bandwidth: float = 0.5,
    bound: float | None = 3.0,
    name: str = "measure-matching",
) -> Problem:
    """The measure-to-measure control problem of the module docstring as an ensemble :class:`~turnpike.Problem`.

    Arguments:
        inputs: input clouds, shape (N, n, d), each token on the sphere (normalised here).
        targets: target clouds, shape (N, n, d) (normalised here).
        width: perceptron width m (>= 1).
        loss: ``"pairs"`` or ``"mmd"``; running / terminal: weights ``c_r``, ``c_T`` >= 0 of the loss.
        activation: ``"softplus"`` (default, ``log(1 + e^z)``: smooth, which IPOPT's convergence needs) or
            ``"relu"`` (the paper's ``(·)_+``; IPOPT typically stalls on its kink).
        l2: ``λ2`` of ``λ2 |θ|²`` in the running cost.
        bandwidth: σ of the MMD kernel.
        bound: box ``|θ_k| <= bound`` on every parameter (None: unbounded). Without it the optimiser
            drives θ to sizes at which the transcription's step no longer resolves the flow and
            exploits the integrator's error instead of steering the continuous dynamics; check any
            solution with :func:`turnpike.resimulation_error`.

    Solve with ``tp.solve(problem, T, steps)``; compare horizons with ``tp.compare_horizons``.
    """
    inputs = check_finite("inputs", inputs)
    targets = check_finite("targets", targets)
    if inputs.ndim != 3:
        raise InputError(f"inputs must have shape (N, n, d), got shape {inputs.shape}")
    if targets.shape != inputs.shape:
        raise InputError(f"targets must have the shape of inputs {inputs.shape}, got shape {targets.shape}")
    check_choice("loss", loss, LOSSES)
    check_choice("activation", activation, ACTIVATIONS)
    width = check_positive("width", width, integer=True)
    bandwidth = check_positive("bandwidth", bandwidth)
    for label, w in (("running", running), ("terminal", terminal)):
        if not np.isfinite(w) or w < 0:
            raise InputError(f"{label} must be a finite number >= 0, got {w!r}")
    N, n, d = inputs.shape
    inputs = inputs / np.linalg.norm(inputs, axis=-1, keepdims=True)
    targets = targets / np.linalg.norm(targets, axis=-1, keepdims=True)
    x = ca.SX.sym("x", n * d)
    y = ca.SX.sym("y", n * d)
    theta = ca.SX.sym("theta", parameter_count(d, width))
    ell = _loss_expr(x, y, n, d, loss, bandwidth)
    names = ([f"V{i}{j}" for j in range(d) for i in range(d)] + [f"B{i}{j}" for j in range(d) for i in range(d)]
             + [f"W{i}{j}" for j in range(width) for i in range(d)] + [f"U{i}{j}" for j in range(d)
                                                                      for i in range(width)]
             + [f"b{i}" for i in range(width)])
    return Problem(
        state=x, control=theta, data=y,
        dynamics=transformer_field(x, theta, n, d, width, activation),
        running_cost=running * ell, terminal_cost=terminal * ell,
        x0=inputs.reshape(N, n * d), data_values=targets.reshape(N, n * d),
        l2=l2, name=name,
        control_lower=None if bound is None else -check_positive("bound", bound),
        control_upper=None if bound is None else bound,
        state_names=[f"x{k}_{c}" for k in range(n) for c in range(d)], control_names=names,
    )
