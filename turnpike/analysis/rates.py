"""Exponential turnpike rates: fitted from a distance curve, and predicted from the linearisation.

Fitted (:func:`fit_rate`). The turnpike estimate (Trélat-Zuazua; Grüne-Guglielmi; Geshkovski-Zuazua,
Acta Numerica 2022) is ``d(t) <= K (e^{-μt} + e^{-μ(T-t)})``. The fit takes this bound as a model of
the curve and minimises the squared error of ``log d`` over the points above a noise floor (the
solver's tolerance makes smaller distances meaningless); the two-sided model, not linear in μ, is
started from the best μ of a logarithmic grid on ``[0.1/T, max(200/T, 10)]`` (for fixed μ the best
log K is a mean). The one-sided model ``K e^{-μt}`` is for problems without a boundary layer at T
(neural ODE with a terminal loss, the tracking variant). Goodness of fit is the R² of the log-model
over the points fitted; below :data:`MIN_R2` the curve is not called exponential and no rate is
given, whichever model was fitted.

Which model (``one_sided=None``, the default). Both are fitted to the same points. A model whose
fitted curve does not decay over ``[0, T]`` (``μT < 1``) is not a candidate. Of two candidates the
one-sided model is the simpler (one exponential: a straight line in ``log d``, fitted by linear least
squares with a unique solution; the two-sided adds a boundary layer at T) and is kept unless the
two-sided is clearly better: its residual sum of squares of ``log d`` is below :data:`CLEARLY_BETTER`
(one half) of the one-sided's, i.e. ``1 - R²₂ < ½ (1 - R²₁)`` (a tie keeps the one-sided). Then the
R² test above applies to the model taken. On the tracking variant of examples/neural_ode_turnpike.py
at T = 30 (no boundary layer at T) the two-sided model gives μ = 0.042 at R² = 0.0006 and the
one-sided μ = 0.261 at R² = 0.985: one-sided. On the linear-quadratic catalogue problem at T = 30 (a
layer at each end) the one-sided line has μT = 0.74 and R² = 0.005, the two-sided μ = 0.689 at
R² = 0.988: two-sided. ``one_sided=True`` or ``False`` fits that model alone, as before.

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

__all__ = ["RateFit", "PredictedRate", "fit_rate", "predicted_rate", "DEFAULT_FLOOR", "MIN_R2", "CLEARLY_BETTER"]

DEFAULT_FLOOR = 1e-6
"""Distances below this are treated as solver noise (IPOPT's default tolerance here is 1e-8)."""

MIN_R2 = 0.5
"""A fit whose log-model explains less than half of the variance of ``log d`` gives no rate: the curve
is not an exponential (the studies that prompted it reported rates at R² = 0.017 and 0.077)."""

CLEARLY_BETTER = 0.5
"""With ``one_sided=None`` the two-sided model replaces the simpler one-sided one only if its residual sum
of squares of ``log d`` is below this fraction of the one-sided's (module docstring)."""


@dataclass(frozen=True)
class RateFit:
    """``d(t) ≈ K (e^{-μt} + e^{-μ(T-t)})`` (two-sided) or ``K e^{-μt}`` (one-sided).

    ``success`` is False (and ``rate`` NaN) when fewer than ``min_points`` points lie above the
    floor, when the curve or its times are not finite, when the fitted curve does not decay
    (``μT < 1``), or when it fits badly (``r2 < min_r2``): a rate is never made up for a curve
    without a turnpike. ``r2`` is the coefficient of determination of the fit of ``log d``.
    ``one_sided`` is the model the numbers belong to; ``chosen`` says whether it was chosen from the
    data (``one_sided=None``), and then ``other_r2`` is the R² of the model not taken (NaN otherwise).
    """

    success: bool
    message: str
    rate: float
    constant: float
    r2: float
    points: int
    floor: float
    one_sided: bool
    chosen: bool = False
    other_r2: float = np.nan

    @property
    def model(self) -> str:
        """``"one-sided"`` or ``"two-sided"``."""
        return "one-sided" if self.one_sided else "two-sided"


def fit_rate(
    t,
    d,
    T: float,
    *,
    one_sided: bool | None = None,
    floor: float = DEFAULT_FLOOR,
    min_points: int = 5,
    min_r2: float = MIN_R2,
) -> RateFit:
    """Fit the turnpike model to a distance curve ``d`` sampled at times ``t`` on ``[0, T]``.

    Only points with ``d > floor`` enter the fit; the squared error of ``log d`` is minimised (module
    docstring). ``one_sided``: True fits ``K e^{-μt}``, False ``K (e^{-μt} + e^{-μ(T-t)})``, None (default)
    fits both and chooses by the rule of the module docstring. Whatever the model, no rate is given when
    its R² is below ``min_r2`` (:data:`MIN_R2`) or its curve does not decay (``μT < 1``).

    Returns a :class:`RateFit`; it never raises on a curve that cannot be fitted (too few points), it
    says so.

    Raises:
        InputError: ``t`` and ``d`` are not 1-d arrays of one length, or ``one_sided`` is not True, False or None.
    """
    if one_sided is not None and not isinstance(one_sided, (bool, np.bool_)):
        raise InputError(f"one_sided must be True, False or None (choose from the data), got {one_sided!r}")
    t = np.asarray(t, dtype=float)
    d = np.asarray(d, dtype=float)
    if t.shape != d.shape or t.ndim != 1:
        raise InputError(f"t and d must be 1-d arrays of equal length, got shapes {t.shape} and {d.shape}")
    chosen = one_sided is None
    model = True if chosen else bool(one_sided)  # the model reported when no fit is possible

    def failed(message, n, r2=np.nan):
        return RateFit(False, message, np.nan, np.nan, r2, n, floor, model, chosen)

    if not (np.isfinite(T) and np.all(np.isfinite(t))) or np.any(np.isinf(d)) or np.any(np.abs(t) > 1e150):
        return failed("the curve or its times are not finite (or too large to fit)", 0)
    keep = np.isfinite(d) & (d > floor)
    n = int(keep.sum())
    if n < min_points:
        return failed(f"only {n} points above the floor {floor:g}", n)
    tk, yk = t[keep], np.log(d[keep])
    fits = {side: _fit(tk, yk, T, side) for side in ((True, False) if chosen else (model,))}
    if chosen:
        (mu1, _, _, ss1), (mu2, _, _, ss2) = fits[True], fits[False]
        decays1, decays2 = mu1 * T >= 1.0, mu2 * T >= 1.0
        # the simpler one-sided model, unless the two-sided is clearly better or the one-sided does not decay
        # (residual sums compared, not 1 - R², which loses digits when both fits are nearly exact)
        model = not (decays2 and (not decays1 or ss2 < CLEARLY_BETTER * ss1))
    mu, logK, r2, _ = fits[model]
    other = fits[not model][2] if chosen else np.nan
    name = "one-sided" if model else "two-sided"
    how = f" ({name} chosen: R² = {r2:.3g} against {other:.3g})" if chosen else ""
    if mu * T < 1.0:  # the model does not fall even by a factor e over [0, T]: no rate to report
        return RateFit(False, f"no exponential decay over [0, T] (fitted μT = {mu * T:.2g} < 1){how}", np.nan,
                       np.nan, r2, n, floor, model, chosen, other)
    if r2 < min_r2:
        return RateFit(False, f"not exponential: R² = {r2:.2g} < {min_r2:g}{how}", np.nan, np.nan, r2, n, floor,
                       model, chosen, other)
    return RateFit(True, f"fitted{how}", float(mu), float(np.exp(logK)), r2, n, floor, model, chosen, other)


def _fit(tk: np.ndarray, yk: np.ndarray, T: float, one_sided: bool) -> tuple[float, float, float, float]:
    """``(μ, log K, R², residual sum of squares)`` of one model fitted to ``yk = log d`` at times ``tk``."""
    if one_sided:  # log d = log K - μ t: linear least squares
        slope, logK = np.polyfit(tk, yk, 1)
        mu, model = -slope, logK + slope * tk
    else:  # for fixed μ the best log K is a mean: scan μ on a grid with log K profiled out, then refine

        def residual(z):
            return z[0] + _log_two_sided(z[1], tk, T) - yk

        grid = np.geomspace(0.1 / T, max(200.0 / T, 10.0), 400)
        shapes = np.array([_log_two_sided(m, tk, T) for m in grid])
        offsets = (yk[None, :] - shapes).mean(axis=1)
        start = int(np.argmin(np.sum((offsets[:, None] + shapes - yk[None, :]) ** 2, axis=1)))
        z0 = np.array([offsets[start], grid[start]])
        sol = least_squares(residual, z0, bounds=([-np.inf, 0.0], [np.inf, np.inf]), method="trf")
        logK, mu = sol.x
        model = residual(sol.x) + yk
    ss_res = float(np.sum((yk - model) ** 2))
    ss_tot = float(np.sum((yk - yk.mean()) ** 2))
    return float(mu), float(logK), (1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0), ss_res


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
