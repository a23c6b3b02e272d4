"""Turnpike estimates against the theory: Hamiltonian gap, value asymptotics, exact transport turnpike."""

import numpy as np
import pytest

import turnpike as tp
from problems import LinearQuadratic, Pendulum, Transport

HORIZONS = [10, 15, 20, 25, 30]


@pytest.fixture(scope="module")
def real_gap_study():
    """dy/dt = Ay + Bu with A unstable; Hamiltonian eigenvalues ±1, ±√5 (real), so μ = 1."""
    prob = LinearQuadratic(A=[[0, 1], [2, -1.0]], B=[[0], [1.0]], target=[1, 0])
    return prob, tp.compare_horizons(prob, HORIZONS, dt=0.05, progress=False)


def test_fitted_rate_matches_the_hamiltonian_gap(real_gap_study):
    prob, study = real_gap_study
    gap = prob.spectral_gap()
    assert gap == pytest.approx(1.0, rel=1e-12)
    for rep in study.reports:
        assert rep.success
        assert rep.predicted.rate == pytest.approx(gap, rel=1e-9)
        if rep.T >= 20:
            assert rep.fit.rate == pytest.approx(gap, rel=0.10)


def test_oscillating_lq_fitted_rate_within_10_percent():
    """The catalogue example has complex eigenvalues ±0.676 ± 0.978i: the distance oscillates."""
    prob = LinearQuadratic.example()
    study = tp.compare_horizons(prob, [20, 40], dt=0.1, progress=False)
    for rep in study.reports:
        assert rep.fit.rate == pytest.approx(prob.spectral_gap(), rel=0.10)


def test_distance_at_half_horizon_decays_like_exp_minus_mu_T_over_2(real_gap_study):
    _, study = real_gap_study
    mid = [rep.distances.total[len(rep.distances.total) // 2] for rep in study.reports]
    slope = np.polyfit(HORIZONS, np.log(mid), 1)[0]
    assert slope == pytest.approx(-0.5, rel=0.05)


def test_value_asymptotics(real_gap_study):
    """J_T/T -> J̄ and J_T - T J̄ converges (the turnpike's O(1) term)."""
    _, study = real_gap_study
    rows = study.rows()
    gaps = [abs(r["cost_per_time"] - r["static_cost"]) for r in rows]
    assert all(a > b for a, b in zip(gaps, gaps[1:], strict=False))
    excess = [r["cost_excess"] for r in rows]
    assert np.ptp(excess[2:]) < 1e-3 * abs(excess[-1])
    assert gaps[-1] * HORIZONS[-1] == pytest.approx(abs(excess[-1]), rel=1e-9)


def test_no_gap_is_reported_without_a_rate():
    """Undamped oscillator, C = 0: eigenvalues on the imaginary axis, distance does not decay."""
    prob = LinearQuadratic(A=[[0, 1], [-1, 0.0]], B=[[0], [1.0]], C=np.zeros((1, 2)), x0=[1.0, 0.0])
    assert prob.spectral_gap() is None
    study = tp.compare_horizons(prob, [10, 20], dt=0.1, progress=False)
    for row in study.rows():
        assert row["predicted_rate"] is None and "no spectral gap" in row["predicted_reason"]
        assert row["rate"] is None


def test_predicted_rate_of_the_pendulum_matches_its_linearisation_by_hand():
    """At (θ̄, 0, ū): f_x = [[0, 1], [-cos θ̄, -c]], f_u = (0, 1)ᵀ, ℋ_xx = diag(1 + p̄_ω sin θ̄, 1), ℋ_uu = r."""
    prob = Pendulum(target_angle=0.8, damping=0.4, control_weight=0.7)
    x, u, p = prob.static_optimum()
    A = np.array([[0, 1], [-np.cos(x[0]), -0.4]])
    Q = np.diag([1 + p[1] * np.sin(x[0]), 1.0])
    H = np.block([[A, -np.array([[0, 0], [0, 1 / 0.7]])], [-Q, -A.T]])
    expected = np.abs(np.linalg.eigvals(H).real).min()
    stat = tp.solve_static(prob)
    assert tp.predicted_rate(prob, stat).rate == pytest.approx(expected, rel=1e-8)
    rep = tp.turnpike_report(tp.solve(prob, 40.0, dt=0.05), stat, problem=prob)
    assert rep.fit.rate == pytest.approx(expected, rel=0.10)


def test_fit_recovers_a_synthetic_rate_above_the_noise_floor():
    T, mu, K = 30.0, 0.7, 2.0
    t = np.linspace(0, T, 301)
    d = np.maximum(K * (np.exp(-mu * t) + np.exp(-mu * (T - t))), 1e-9)  # a solver floor at 1e-9
    fit = tp.fit_rate(t, d, T, floor=1e-7)
    assert fit.success and fit.rate == pytest.approx(mu, rel=1e-8) and fit.constant == pytest.approx(K, rel=1e-7)
    one = tp.fit_rate(t, 3.0 * np.exp(-0.4 * t), T, one_sided=True)
    assert one.rate == pytest.approx(0.4, rel=1e-10) and one.constant == pytest.approx(3.0, rel=1e-10)
    assert not tp.fit_rate(t, np.full_like(t, 1e-8), T).success


def test_tube_times_of_an_analytic_curve():
    """d = e^{-t} + e^{-(T-t)}: the tube's ends are the two roots of d = ε, on a grid of spacing 1e-3."""
    from scipy.optimize import brentq

    T, eps = 20.0, 1e-3

    def d(t):
        return np.exp(-t) + np.exp(-(T - t))

    enter, leave = brentq(lambda s: d(s) - eps, 0, T / 2), brentq(lambda s: d(s) - eps, T / 2, T)
    t = np.linspace(0, T, 20001)
    tube = tp.tube(t, d(t), eps)
    assert enter <= tube.entry < enter + 1e-3
    assert leave - 1e-3 < tube.exit <= leave
    assert tube.fraction == pytest.approx((leave - enter) / T, abs=2e-4)
    assert tp.tube(t, np.ones_like(t), eps).entry is None


def test_transport_control_sits_at_one_half_in_the_middle():
    """The exact turnpike ū = ½ of the semi-discretised transport equation, T = 10."""
    prob = Transport()
    sol = tp.solve(prob, 10.0, dt=0.05)
    assert sol.success
    stat = tp.solve_static(prob)
    np.testing.assert_allclose(stat.u, 0.5, atol=1e-10)
    np.testing.assert_allclose(stat.x, 0.5, atol=1e-10)
    t_mid = 0.5 * (sol.t[:-1] + sol.t[1:])
    middle = (t_mid > 2.5) & (t_mid < 7.5)
    assert np.abs(sol.u[middle, 0] - 0.5).max() < 1e-3


def test_continuation_reaches_the_same_optimum_as_cold_starts():
    prob = Pendulum()
    warm = tp.compare_horizons(prob, [5, 10, 20], dt=0.1, progress=False)
    cold = tp.compare_horizons(prob, [5, 10, 20], dt=0.1, continuation=False, progress=False)
    for a, b in zip(warm.solutions, cold.solutions, strict=True):
        assert a.success and b.success
        assert a.cost == pytest.approx(b.cost, rel=1e-9)
    assert sum(s.stats["iterations"] for s in warm.solutions) <= sum(s.stats["iterations"] for s in cold.solutions)


def test_study_saves_loads_and_replots(tmp_path):
    prob = Pendulum()
    study = tp.compare_horizons(prob, [4, 8], steps=40, progress=False)
    study.save(tmp_path)
    back = tp.HorizonStudy.load(tmp_path)
    assert back.rows() == study.rows()
    paths = back.plot(tmp_path / "figs")
    assert [p.name for p in paths] == ["distance.png", "trajectories.png", "value_and_rate.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)
    assert "T" in back.table() and "8" in back.table()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"horizons": [], "dt": 0.1}, "horizons must be a non-empty sequence"),
        ({"horizons": [5, 5], "dt": 0.1}, "horizons must be distinct"),
        ({"horizons": [5, -1], "dt": 0.1}, "horizons must be a finite number > 0"),
        ({"horizons": [5, 10], "dt": 0.3}, "dt=0.3 must divide T=5"),
        ({"horizons": [5, 10]}, "give exactly one of steps or dt"),
        ({"horizons": [5], "dt": 0.1, "initial_guess": None}, "initial_guess cannot be passed"),
    ],
)
def test_compare_horizons_refuses_bad_arguments(kw, match):
    with pytest.raises(tp.InputError, match=match):
        tp.compare_horizons(Pendulum(), progress=False, **kw)


def test_value_and_rate_figure_claims_nothing_without_a_theorem():
    """The rate panel draws only rates whose fit has R² >= MIN_R2 (here a report is given one with R² = 0.1 and one
    with R² = 0.9), J_T - T·J̄ is not called bounded when no spectral gap is predicted, and the notes are below
    the panels (the figure's supxlabel), not on them."""
    from dataclasses import replace

    from turnpike.analysis.rates import MIN_R2, RateFit
    from turnpike.plots import _value_and_rate

    prob = LinearQuadratic(A=[[0, 1], [-1, 0.0]], B=[[0], [1.0]], C=np.zeros((1, 2)), x0=[1.0, 0.0])
    study = tp.compare_horizons(prob, [10, 20], dt=0.1, progress=False)
    bad = RateFit(True, "fitted", 0.3, 1.0, 0.1, 100, 1e-6, True)
    good = RateFit(True, "fitted", 0.7, 1.0, 0.9, 100, 1e-6, False)
    study = replace(study, reports=(replace(study.reports[0], fit=bad), replace(study.reports[1], fit=good)))
    fig = _value_and_rate(study, "test")
    ax1, ax2, ax3 = fig.axes
    assert "bounded" not in ax2.get_title()
    drawn = np.concatenate([line.get_ydata() for line in ax3.get_lines() if line.get_label().startswith("fitted")])
    assert list(drawn) == [0.7] and MIN_R2 > 0.1
    note = fig._supxlabel.get_text().replace("\n", " ")
    assert "no bound is claimed" in note and "T = 10" in note
    assert [t.get_text() for t in ax3.texts] == ["R² 0.90"]  # on the panel: only the drawn fit's R²
    gap = tp.compare_horizons(LinearQuadratic.example(), [20], dt=0.1, progress=False)
    assert "turnpike estimate holds" in _value_and_rate(gap, "lq")._supxlabel.get_text().replace("\n", " ")
