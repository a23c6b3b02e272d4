"""The rate fit chooses the one- or two-sided turnpike model from the curve, and never reports a rate below MIN_R2.

Synthetic curves with known rates: ``K e^{-μt}`` (no boundary layer at T) and ``K (e^{-μt} + e^{-μ(T-t)})``
(a layer at each end), times log-normal noise ``e^{σ ε}``, ε standard normal from a seeded generator. The fit is
least squares in ``log d``: with 301 points on [0, 30] and σ = 0.2 the standard error of μ is about
σ / sqrt(Σ (t - t̄)²) = 0.2 / 150 ≈ 1.3e-3, so 2% of μ = 0.5 is more than 7 standard errors.
"""

import numpy as np
import pytest

import turnpike as tp
from turnpike.analysis.rates import CLEARLY_BETTER, MIN_R2, fit_rate
from turnpike.errors import InputError

T, MU, K, SIGMA = 30.0, 0.5, 2.0, 0.2
t = np.linspace(0.0, T, 301)


def noisy(curve, seed, sigma=SIGMA):
    return curve * np.exp(sigma * np.random.default_rng(seed).standard_normal(curve.shape))


def one_sided_curve():
    return K * np.exp(-MU * t)


def two_sided_curve():
    return K * (np.exp(-MU * t) + np.exp(-MU * (T - t)))


@pytest.mark.parametrize("seed", range(5))
def test_a_one_sided_exponential_is_fitted_one_sided(seed):
    fit = fit_rate(t, noisy(one_sided_curve(), seed), T, floor=1e-12)
    assert fit.success and fit.chosen and fit.one_sided and fit.model == "one-sided"
    assert fit.rate == pytest.approx(MU, rel=0.02)
    assert fit.constant == pytest.approx(K, rel=0.1)
    assert fit.r2 >= MIN_R2 and fit.other_r2 < fit.r2
    assert "one-sided chosen" in fit.message


@pytest.mark.parametrize("seed", range(5))
def test_a_two_sided_exponential_is_fitted_two_sided(seed):
    fit = fit_rate(t, noisy(two_sided_curve(), seed), T, floor=1e-12)
    assert fit.success and fit.chosen and not fit.one_sided and fit.model == "two-sided"
    assert fit.rate == pytest.approx(MU, rel=0.02)
    assert fit.constant == pytest.approx(K, rel=0.1)
    # the rule: the two-sided residual is below CLEARLY_BETTER times the one-sided's
    assert 1 - fit.r2 < CLEARLY_BETTER * (1 - fit.other_r2)


def test_a_layer_at_t_alone_is_no_turnpike_model():
    """d = K e^{-μ(T-t)}: the one-sided line rises (μT < 0) and the two-sided model, with one constant for both
    ends, cannot fit a curve that is small at t = 0: no rate, and the message says why."""
    fit = fit_rate(t, noisy(K * np.exp(-MU * (T - t)), 7), T, floor=1e-12)
    assert not fit.success and np.isnan(fit.rate) and "no exponential decay" in fit.message


def test_a_tie_keeps_the_simpler_one_sided_model():
    """Noise-free K e^{-μt} cut by the floor before T/2: both models fit it to round-off; one-sided is kept."""
    d = one_sided_curve()
    fit = fit_rate(t, d, T, floor=K * np.exp(-MU * 12.0))
    assert fit.success and fit.one_sided and fit.rate == pytest.approx(MU, rel=1e-10)


@pytest.mark.parametrize("two_sided_data", [False, True])
@pytest.mark.parametrize("one_sided", [None, "as the data"])
def test_no_rate_below_min_r2_in_either_model(two_sided_data, one_sided):
    """Slow decays under heavy noise (σ = 1): the fitted μT is about 1.5 (one-sided) or 3 (two-sided), >= 1, but
    the log-model explains under 20% of the variance: no rate, by the R² test, in both branches."""
    mu = 0.1 if two_sided_data else 0.05
    curve = np.exp(-mu * t) + (np.exp(-mu * (T - t)) if two_sided_data else 0.0)
    model = (not two_sided_data) if one_sided == "as the data" else None
    fit = fit_rate(t, noisy(curve, 3, sigma=1.0), T, one_sided=model)
    assert not fit.success and np.isnan(fit.rate) and fit.r2 < MIN_R2
    assert "not exponential" in fit.message and fit.one_sided == (not two_sided_data)
    assert fit.chosen == (model is None)


@pytest.mark.parametrize("one_sided", [None, True, False])
def test_noise_without_decay_has_no_rate(one_sided):
    fit = fit_rate(t, noisy(np.ones_like(t), 4), T, one_sided=one_sided)
    assert not fit.success and np.isnan(fit.rate)


def test_an_explicit_model_is_fitted_as_asked():
    """one_sided=True/False fit that model alone (chosen False), even where the other would be better."""
    d = noisy(one_sided_curve(), 0)
    forced = fit_rate(t, d, T, one_sided=False, floor=1e-12)
    assert not forced.one_sided and not forced.chosen and np.isnan(forced.other_r2)
    assert forced.r2 < fit_rate(t, d, T, floor=1e-12).r2
    one = fit_rate(t, d, T, one_sided=True, floor=1e-12)
    assert one.one_sided and not one.chosen and one.rate == pytest.approx(MU, rel=0.02)


def test_the_report_and_the_study_choose_by_default():
    """turnpike_report and compare_horizons default to the chooser; rows say which model gave the rate.

    LQ catalogue problem (boundary layers at both ends): two-sided, within 10% of the Hamiltonian gap."""
    from problems import LinearQuadratic

    prob = LinearQuadratic.example()
    study = tp.compare_horizons(prob, [30.0], dt=0.1, progress=False)
    row = study.rows()[0]
    assert study.settings["one_sided"] is None
    assert row["rate_model"] == "two-sided" and "two-sided chosen" in row["rate_message"]
    assert row["rate"] == pytest.approx(prob.spectral_gap(), rel=0.10)


def test_a_bad_one_sided_value_is_named():
    with pytest.raises(InputError, match="one_sided must be True, False or None"):
        fit_rate(t, one_sided_curve(), T, one_sided="yes")


@pytest.mark.slow
def test_the_tracking_problem_of_the_issue_is_fitted_one_sided():
    """The case that prompted the chooser: the tracking variant (outer field, two spheres in R^7, N = 8, α = 1,
    λ = 0.02, RK4, dt = 0.1) at T = 30 has no boundary layer at T. Its total distance to the static optimum
    (x, u, p) fitted two-sided gives no rate (R² ~ 1e-3), one-sided a rate near the linearised spectral gap
    (0.230; the fit, which also sees the faster modes at the start, gave 0.261)."""
    from problems.datasets import concentric_spheres
    from problems.neural_ode import NeuralODEClassification

    points, labels = concentric_spheres(8, 7, seed=0)
    prob = NeuralODEClassification(points, labels, field="outer", cost="tracking", weight=0.02, alpha=1.0)
    static = tp.solve_static(prob)
    rep = tp.turnpike_report(tp.solve(prob, 30.0, dt=0.1, options={"ipopt.tol": 1e-10}), static, problem=prob)
    gap = rep.predicted.rate
    assert rep.success and rep.fit.one_sided and rep.fit.chosen and rep.fit.r2 > 0.9
    assert rep.fit.other_r2 < MIN_R2
    assert rep.fit.rate == pytest.approx(gap, rel=0.25)
