"""Clustering in d = 1 (Boolean attention, leaders) and metastability on the circle."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import turnpike.attention as ta


def test_d1_attention_becomes_boolean_with_two_leaders():
    """V = Q = K = 1 in R: each row of P concentrates on the largest token (if x_i > 0) or the smallest.

    Independent checks: the leaders are the extreme tokens at the start and at the end (the order is
    kept), and the rescaled run z = e^{-t} x (RK4) agrees with the unrescaled ODE in x integrated by DOP853.
    """
    z0 = np.random.default_rng(7).uniform(-1, 1, (12, 1))
    model = ta.Unnormalised(1, beta=1.0, Q=1.0, K=1.0, V=1.0)
    t = np.linspace(0.0, 5.0, 11)
    traj = ta.simulate(model, z0, t, dt=1e-3)
    P = model.attention(t[-1], traj.x[-1])
    assert ta.is_boolean(P, 1e-2)
    assert not ta.is_boolean(model.attention(0.0, z0), 1e-2)
    assert np.linalg.matrix_rank(P, tol=1e-2) == 2
    lead = ta.leaders(P)
    np.testing.assert_array_equal(lead, np.sort([np.argmax(z0), np.argmin(z0)]))
    zT = traj.x[-1, :, 0]
    np.testing.assert_array_equal(lead, np.sort([np.argmax(zT), np.argmin(zT)]))
    # positive tokens attend to the largest, negative ones to the smallest
    np.testing.assert_allclose(P[:, np.argmax(zT)], (zT > 0).astype(float), atol=1e-2)

    def rhs(_t, x):
        L = np.outer(x, x)
        W = np.exp(L - L.max(axis=1, keepdims=True))
        return (W / W.sum(axis=1, keepdims=True)) @ x

    T = 2.0
    ref = solve_ivp(rhs, (0, T), z0[:, 0], method="DOP853", rtol=1e-12, atol=1e-12).y[:, -1]
    np.testing.assert_allclose(model.tokens(T, traj.at(T)), ref[:, None], rtol=1e-7)


@pytest.fixture(scope="module")
def runs():
    return {beta: ta.metastable_run(128, beta, t_max=1e5, seed=0) for beta in (4.0, 16.0, 64.0)}


def test_metastable_plateau_then_collapse(runs):
    """β = 4, n = 128: a cluster count > 1 that lasts over a decade of time, then one cluster."""
    run = runs[4.0]
    long = [p for p in run.plateaus if p.count > 1 and p.start >= 1 and p.ratio >= 10]
    assert long, run.summary()
    assert np.isfinite(run.collapse_time) and run.collapse_time > long[0].end
    assert run.counts[-1] == 1
    # the energy climbs in steps: nearly flat on the plateau, a jump at the collapse
    t, E = run.trajectory.t, run.energy
    on = (t >= long[0].start) & (t <= long[0].end)
    rise = np.ptp(E[on]) / (E[-1] - E[0])
    assert rise < 0.05 and np.all(np.diff(E) >= -1e-9 * E[-1])


def test_metastable_count_grows_with_beta(runs):
    counts = [runs[b].metastable_count for b in (4.0, 16.0, 64.0)]
    assert all(c is not None and c > 1 for c in counts)
    assert counts[0] < counts[1] < counts[2]
    assert [ta.fastest_mode(b) for b in (4.0, 16.0, 64.0)] == [3, 6, 11]


def test_stiff_run_matches_dop853_before_the_plateau():
    theta0 = np.random.default_rng(1).uniform(0, 2 * np.pi, 64)
    t = np.linspace(0, 20, 5)
    a = ta.simulate(ta.CircleAttention(9.0), theta0, t, method="stiff", rtol=1e-10, atol=1e-12)
    b = ta.simulate(ta.CircleAttention(9.0), theta0, t, method="adaptive", rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(a.x, b.x, atol=1e-6)


def test_plateaus_and_collapse_time_helpers():
    t = np.array([0.0, 1, 2, 4, 8, 16])
    ps = ta.plateaus(t, [5, 3, 3, 3, 1, 1])
    assert [(p.count, p.start, p.end) for p in ps] == [(5, 0, 0), (3, 1, 4), (1, 8, 16)]
    assert ta.metastable_count(t, [5, 3, 3, 3, 1, 1], min_ratio=3) == 3
    x = np.zeros((3, 2, 2))
    x[:, 0] = [1, 0]
    x[:, 1] = [[0, 1], [np.cos(0.1), np.sin(0.1)], [1, 0]]
    np.testing.assert_allclose(ta.collapse_time([0, 1, 2], x, 0.2), 1.0)
    np.testing.assert_array_equal(ta.cluster_count(x, 0.05), [2, 2, 1])
