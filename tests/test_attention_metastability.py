"""Metastability measured: plateau lengths grow like e^{cβ}, the energy staircase is normalised by e^β/(2β).

References computed here: the merge time of two point clusters from the exact reduction of SA on the circle
(written out and integrated by quadrature in this file), the cluster masses of a constructed start, and
the bound ``<x_i, x_j> <= 1``.
"""

import numpy as np
import pytest
from scipy.integrate import quad

import turnpike.attention as ta
from turnpike.errors import InputError

GAP = np.pi / 2  # 1 - cos θ0 = 1


def _merge_time(beta: float, gap: float = GAP, tol: float = 1e-2) -> float:
    """Two equal point clusters at distance θ: a token weighs its own cluster e^β and the other e^{β cos θ}, so
    dθ/dt = -2 sin θ e^{β cos θ}/(e^β + e^{β cos θ}); the time to reach the chord tol."""
    low = 2 * np.arcsin(tol / 2)
    return quad(lambda th: (np.exp(beta) + np.exp(beta * np.cos(th))) / (2 * np.sin(th) * np.exp(beta * np.cos(th))),
                low, gap, limit=200)[0]


def _lengths(betas):
    out = []
    for i, beta in enumerate(betas):
        run = ta.metastable_run(6, beta, t_max=30 * _merge_time(beta), points=300,
                                theta0=ta.clustered_start([0.0, GAP], 3, seed=i))
        out.append(ta.plateau_length(run, 2))
    return np.array(out)


def test_plateau_length_exponent_is_the_same_over_two_beta_ranges():
    """Two clusters of 3 tokens at θ0 = π/2: L(β) ~ e^{β(1 - cos θ0)}/(2β), so the slope of log L over a range of
    mean β̄ is about 1 - 1/β̄: 0.91 over β = 8..14, 0.95 over 16..22, within 20% of each other and of 1."""
    low, high = np.array([8.0, 10.0, 12.0, 14.0]), np.array([16.0, 18.0, 20.0, 22.0])
    L_low, L_high = _lengths(low), _lengths(high)
    # each plateau ends where the two-point reduction merges (outputs 4.5% apart in t; the clusters' spread)
    np.testing.assert_allclose(L_low, [_merge_time(b) for b in low], rtol=0.1)
    np.testing.assert_allclose(L_high, [_merge_time(b) for b in high], rtol=0.1)
    fit_low, fit_high = ta.fit_exponent(low, L_low), ta.fit_exponent(high, L_high)
    assert fit_low.r2 > 0.99 and fit_high.r2 > 0.99
    assert abs(fit_low.exponent - fit_high.exponent) <= 0.2 * fit_high.exponent
    for fit, mean in ((fit_low, low.mean()), (fit_high, high.mean())):
        assert fit.exponent == pytest.approx(1 - 1 / mean, rel=0.05)


def test_energy_ratio_on_a_two_cluster_plateau_and_after_the_collapse():
    """Two clusters of 3 of 6 tokens: E/(e^β/(2β)) = Σ (m_c/n)² = 1/2 on the plateau up to e^{-β}; 1 at one cluster."""
    beta = 16.0
    run = ta.metastable_run(6, beta, t_max=30 * _merge_time(beta), points=300,
                            theta0=ta.clustered_start([0.0, GAP], 3, spread=1e-4))
    t, ratio = run.trajectory.t, run.energy_ratio
    plateau = next(p for p in run.plateaus if p.count == 2)
    on = (t >= 1.0) & (t <= plateau.end / 10)
    np.testing.assert_allclose(ratio[on], 0.5, atol=1e-5)
    assert run.counts[-1] == 1 and ratio[-1] == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(run.rescaled_time[1:], np.log(t[1:]) / beta)
    assert ta.max_energy(beta) == pytest.approx(np.exp(beta) / (2 * beta), rel=1e-15)
    x = ta.random_sphere((50, 8), 3, seed=1)  # <x_i, x_j> <= 1, so no configuration exceeds e^β/(2β)
    assert np.all(ta.energy(x, beta) <= ta.max_energy(beta))


def test_two_cluster_merge_time_tends_to_its_laplace_estimate():
    """T(β) (θ0 = π/2) against e^{β(1 - cos θ0)}/(2β sin² θ0): the ratio tends to 1 like 1 + O(1/β)."""
    ratios = [ta.two_cluster_merge_time(GAP, b) / (np.exp(b) / (2 * b)) for b in (50.0, 100.0, 200.0)]
    assert abs(ratios[2] - 1) < abs(ratios[1] - 1) < abs(ratios[0] - 1) < 0.05
    assert ta.two_cluster_merge_time(GAP, 12.0) == pytest.approx(_merge_time(12.0), rel=1e-8)


@pytest.mark.parametrize("kind,rescaled", [("sa", False), ("usa", False), ("usa", True)])
def test_circle_jacobian_equals_central_differences(kind, rescaled):
    """The closed-form Jacobian BDF uses on the circle against central differences of the field (step 1e-6)."""
    theta = np.random.default_rng(4).uniform(0, 2 * np.pi, (2, 7))
    model = ta.CircleAttention(3.0, kind=kind, rescaled=rescaled)
    J = model.jacobian(theta)
    assert J.shape == (2, 7, 7)
    for b in range(2):
        h = 1e-6
        fd = np.stack([(model.field(0, theta[b] + h * e) - model.field(0, theta[b] - h * e)) / (2 * h)
                       for e in np.eye(7)], axis=1)
        np.testing.assert_allclose(J[b], fd, atol=1e-8 * np.abs(fd).max())


def test_inputs_are_checked():
    with pytest.raises(InputError, match="length >= 3"):
        ta.fit_exponent([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(InputError, match="lengths must be finite and > 0"):
        ta.fit_exponent([1.0, 2.0, 3.0], [1.0, np.nan, 2.0])
    with pytest.raises(InputError, match="gap must lie in"):
        ta.two_cluster_merge_time(np.pi, 4.0)
    with pytest.raises(InputError, match=r"theta0 must have shape \(6,\)"):
        ta.metastable_run(6, 4.0, theta0=np.zeros(5))
    with pytest.raises(InputError, match="centres"):
        ta.clustered_start([[0.0, 1.0]], 3)
