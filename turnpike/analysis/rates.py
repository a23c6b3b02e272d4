"""Exponential turnpike rates: fitted from a distance curve, and predicted from the linearisation.

Fitted (:func:`fit_rate`). The turnpike estimate (Trélat-Zuazua; Grüne-Guglielmi; Geshkovski-Zuazua,
Acta Numerica 2022) is ``d(t) <= K (e^{-μt} + e^{-μ(T-t)})``. The fit takes this bound as a model of
the curve and minimises the squared error of ``log d`` over the points above a noise floor (the
solver's tolerance makes smaller distances meaningless). The one-sided model ``K e^{-μt}`` is for
problems without a boundary layer at T (neural ODE with a terminal loss). Goodness of fit is the
R² of the log-model; below :data:`MIN_R2` the curve is not called exponential and no rate is given.

Predicted (:func:`predicted_rate`). Linearising at the static optimum ``(x̄, ū, p̄)`` with the
Hamiltonian ``ℋ = L + pᵀ f`` (the ensemble: all samples stacked, the averaged cost, the costate
carrying the factor 1/N):

    Ã = f_x - f_u ℋ_uu⁻¹ ℋ_ux,   Q̃ = ℋ_xx - ℋ_xu ℋ_uu⁻¹ ℋ_ux,
    H = [[Ã, -f_u ℋ_uu⁻¹ f_uᵀ], [-Q̃, -Ãᵀ]],

and the predicted rate is ``min |Re λ|`` over the eigenvalues of H (for LQ this is the spectral
gap of the Hamiltonian matrix). If an eigenvalue lies on the imaginary axis (``|Re λ| <= tol``:
no gap, e.g. an undetectable oscillating mode, or a continuum of static optima as in neural-ODE
learning), if ``ℋ_uu`` is singular, or if the problem has an L1 term (not differentiable at
``ū``), no rate is predicted: ``rate`` is None and ``reason`` says why.
"""

from __future__ import annotations

from dataclasses import dataclass

import casadi as ca
import numpy as np
from scipy.optimize import least_squares

from ..errors import InputError
from ..problem import Problem
from ..solution import StaticSolution

__all__ = ["RateFit", "PredictedRate", "fit_rate", "predicted_rate", "DEFAULT_FLOOR", "MIN_R2"]

DEFAULT_FLOOR = 1e-6
"""Distances below this are treated as solver noise (IPOPT's default tolerance here is 1e-8)."""

MIN_R2 = 0.5
"""A fit whose log-model explains less than half of the variance of ``log d`` gives no rate: the curve
is not an exponential (the studies that prompted it reported rates at R² = 0.017 and 0.077)."""


@dataclass(frozen=True)
class RateFit:
    """``d(t) ≈ K (e^{-μt} + e^{-μ(T-t)})`` (two-sided) or ``K e^{-μt}`` (one-sided).

    ``success`` is False (and ``rate`` NaN) when fewer than ``min_points`` points lie above the
    floor, when the curve or its times are not finite, when the fitted curve does not decay
    (``μT < 1``), or when it fits badly (``r2 < min_r2``): a rate is never made up for a curve
    without a turnpike. ``r2`` is the coefficient of determination of the fit of ``log d``.
    """

    success: bool
    message: str
    rate: float
    constant: float
    r2: float
    points: int
    floor: float
    one_sided: bool


def fit_rate(
    t,
    d,
    T: float,
    *,
    one_sided: bool = False,
    floor: float = DEFAULT_FLOOR,
    min_points: int = 5,
    min_r2: float = MIN_R2,
) -> RateFit:
    """Fit the turnpike model to a distance curve ``d`` sampled at times ``t`` on ``[0, T]``.

    Only points with ``d > floor`` enter the fit. Returns a :class:`RateFit`; it never raises on
    a curve that cannot be fitted (too few points), it says so.
    """
    t = np.asarray(t, dtype=float)
    d = np.asarray(d, dtype=float)
    if t.shape != d.shape or t.ndim != 1:
        raise InputError(f"t and d must be 1-d arrays of equal length, got shapes {t.shape} and {d.shape}")
    if not (np.isfinite(T) and np.all(np.isfinite(t))) or np.any(np.isinf(d)) or np.any(np.abs(t) > 1e150):
        return RateFit(False, "the curve or its times are not finite (or too large to fit)", np.nan, np.nan,
                       np.nan, 0, floor, one_sided)
    keep = np.isfinite(d) & (d > floor)
    n = int(keep.sum())
    if n < min_points:
        return RateFit(False, f"only {n} points above the floor {floor:g}", np.nan, np.nan, np.nan, n, floor,
                       one_sided)
    tk, yk = t[keep], np.log(d[keep])
    if one_sided:  # log d = log K - μ t: linear least squares
        slope, logK = np.polyfit(tk, yk, 1)
        mu, model = -slope, logK + slope * tk
    else:  # start from a linear fit on the first half
        first = tk <= T / 2
        slope, intercept = np.polyfit(tk[first], yk[first], 1) if first.sum() >= 2 else (-1.0 / T, yk.max())

        def residual(z):
            return z[0] + _log_two_sided(z[1], tk, T) - yk

        z0 = np.array([intercept, max(-slope, 1e-3)])
        sol = least_squares(residual, z0, bounds=([-np.inf, 0.0], [np.inf, np.inf]), method="trf")
        logK, mu = sol.x
        model = residual(sol.x) + yk
    ss_res = float(np.sum((yk - model) ** 2))
    ss_tot = float(np.sum((yk - yk.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    if mu * T < 1.0:  # the model does not fall even by a factor e over [0, T]: no rate to report
        return RateFit(False, f"no exponential decay over [0, T] (fitted μT = {mu * T:.2g} < 1)", np.nan, np.nan,
                       r2, n, floor, one_sided)
    if r2 < min_r2:
        return RateFit(False, f"not exponential: R² = {r2:.2g} < {min_r2:g}", np.nan, np.nan, r2, n, floor, one_sided)
    return RateFit(True, "fitted", float(mu), float(np.exp(logK)), r2, n, floor, one_sided)


def _log_two_sided(mu: float, t: np.ndarray, T: float) -> np.ndarray:
    """``log(e^{-μt} + e^{-μ(T-t)})`` without overflow."""
    a, b = -mu * t, -mu * (T - t)
    return np.logaddexp(a, b)


@dataclass(frozen=True)
class PredictedRate:
    """The rate predicted by the linearisation at the static optimum, or None with the reason."""

    rate: float | None
    reason: str
    eigenvalues: np.ndarray


def predicted_rate(problem: Problem, static: StaticSolution, *, tol: float = 1e-7) -> PredictedRate:
    """The spectral gap of the linearised optimality system at ``static`` (see the module docstring).

    ``tol`` is relative to the largest ``|Re λ|``: eigenvalues closer to the imaginary axis count
    as on it.
    """
    none = np.zeros(0, dtype=complex)
    if not static.success:
        return PredictedRate(None, "the static problem did not converge", none)
    if problem.l1 > 0:
        return PredictedRate(None, "the L1 term is not differentiable at the static control", none)
    N, nx, nu = problem.n_samples, problem.nx, problem.nu
    X = ca.SX.sym("X", nx, N)
    P = ca.SX.sym("P", nx, N)
    u = ca.SX.sym("u", nu)
    Y = problem.data_values.T
    f = problem.dynamics.map(N)(X, u, Y)
    L = ca.sum2(problem.running_cost.map(N)(X, u, Y)) / N + problem.l2 * ca.sumsqr(u)
    Ham = L + ca.sum1(ca.sum2(P * f))
    x, p, fv = ca.vec(X), ca.vec(P), ca.vec(f)
    Ham_u = ca.gradient(Ham, u)
    H_xx, H_ux, H_uu = ca.hessian(Ham, x)[0], ca.jacobian(Ham_u, x), ca.jacobian(Ham_u, u)
    blocks = ca.Function("lin", [x, u, p], [ca.jacobian(fv, x), ca.jacobian(fv, u), H_xx, H_ux, H_uu])
    xbar = np.asarray(static.x).reshape(N, nx).reshape(-1)
    pbar = np.asarray(static.adjoint).reshape(N, nx).reshape(-1)
    f_x, f_u, Hxx, Hux, Huu = (np.asarray(a) for a in blocks(xbar, static.u, pbar))
    if np.linalg.cond(Huu) > 1e12:
        return PredictedRate(None, "ℋ_uu is singular at the static optimum", none)
    Huu_inv_Hux = np.linalg.solve(Huu, Hux)
    A = f_x - f_u @ Huu_inv_Hux
    Q = Hxx - Hux.T @ Huu_inv_Hux
    Bm = f_u @ np.linalg.solve(Huu, f_u.T)
    H = np.block([[A, -Bm], [-Q, -A.T]])
    eig = np.linalg.eigvals(H)
    re = np.abs(eig.real)
    if re.max() == 0 or re.min() <= tol * re.max():
        return PredictedRate(None, "eigenvalues on the imaginary axis: no spectral gap "
                             "(an undetectable or unstabilisable mode, or a continuum of static optima)", eig)
    return PredictedRate(float(re.min()), "spectral gap of the linearised Hamiltonian system", eig)
