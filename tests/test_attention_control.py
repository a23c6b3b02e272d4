"""The measure-to-measure control problem: targets reached, checked by re-simulation and optimal assignment."""

import numpy as np
import pytest

import turnpike as tp
import turnpike.attention as ta
from turnpike.errors import InputError

N, n, d = 2, 3, 2
TOL = 1e-5  # matching loss ("pairs", mean squared distance per token) at T
T, STEPS = 2.0, 40


@pytest.fixture(scope="module")
def clouds():
    """Two clouds of three tokens on the circle; each target token 0.3 rad away (random side)."""
    rng = np.random.default_rng(0)
    theta = rng.uniform(0, 2 * np.pi, (N, n))
    shift = 0.3 * rng.choice([-1, 1], (N, n))
    return ta.CircleAttention.to_points(theta), ta.CircleAttention.to_points(theta + shift)


@pytest.fixture(scope="module")
def problem(clouds):
    inputs, targets = clouds
    return ta.measure_matching(inputs, targets, width=2, running=1.0, terminal=10.0, l2=1e-3, bound=2.0)


def test_control_problem_reaches_its_targets_and_reports_its_turnpike(problem, clouds):
    inputs, targets = clouds
    assert problem.nx == n * d and problem.nu == ta.parameter_count(d, 2) == 18 and problem.n_samples == N
    sol = tp.solve(problem, T=T, steps=STEPS)
    assert sol.success, sol.message
    xT = sol.x[-1].reshape(N, n, d)
    assert np.all(ta.matching_loss(xT, targets) < TOL)
    # independent: the continuous dynamics (solve_ivp) on the returned controls, and W2 by optimal assignment
    resim = tp.resimulate(problem, sol)
    assert np.max(np.abs(resim - sol.x)) < 1e-3  # the transcription resolves the flow (no integrator exploit)
    resim = resim[-1].reshape(N, n, d)
    for i in range(N):
        assert ta.wasserstein2(resim[i], targets[i]) < 2e-3
        assert ta.wasserstein2(inputs[i], targets[i]) > 0.25  # the targets are not at the inputs
    np.testing.assert_allclose(np.linalg.norm(resim, axis=-1), 1.0, atol=1e-8)  # the field is tangent

    static = tp.solve_static(problem)
    assert static.success and static.cost < 1e-10
    np.testing.assert_allclose(static.x.reshape(N, n, d), targets, atol=1e-5)  # parked on the targets
    rep = tp.turnpike_report(sol, static, problem=problem)
    assert rep.success and rep.summary()["T"] == T
    assert rep.distances.total[-1] < rep.distances.total[0]


def test_horizon_comparison(problem):
    study = tp.compare_horizons(problem, [1.0, 2.0], dt=0.1, progress=False)
    assert study.success
    assert len(study.reports) == 2 and "static cost" in study.table()


def test_matching_losses_and_inputs():
    x = ta.random_sphere((4,), 3, seed=0)
    assert ta.matching_loss(x, x) == 0.0
    assert ta.matching_loss(x, x, loss="mmd") == pytest.approx(0.0, abs=1e-15)
    perm = x[[2, 0, 3, 1]]
    assert ta.wasserstein2(x, perm) == pytest.approx(0.0, abs=1e-15) and ta.matching_loss(x, perm) > 0
    with pytest.raises(InputError, match="loss"):
        ta.measure_matching(x[None], x[None], loss="w2")
    with pytest.raises(InputError, match=r"targets must have the shape"):
        ta.measure_matching(x[None], x[None, :3])
