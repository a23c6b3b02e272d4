"""Neural-ODE learning: time rescaling, the 1/T decay of the training error, data sets, diagnostics."""

import numpy as np
import pytest

import turnpike as tp
from problems.datasets import DATASETS
from problems.neural_ode import NeuralODEClassification

rng = np.random.default_rng(0)
POINTS = rng.uniform(-1, 1, (12, 2))
LABELS = np.sign(POINTS[:, 1])  # separable by the second coordinate: zero loss is reachable


def outer_erm(weight):
    return NeuralODEClassification(POINTS, LABELS, field="outer", cost="erm", weight=weight)


def test_time_rescaling_of_the_outer_model():
    """f linear in u: problem (T, λ) is problem (1, λ/T) with u_T(t) = u_1(t/T)/T (REFERENCE.md §1).

    Both are solved from corresponding seeded starts; the optimal costs agree to 1e-6 and the controls map.
    """
    T, lam, steps = 4.0, 0.5, 20
    v0 = 0.1 * np.random.default_rng(1).standard_normal((steps, 6))
    one = tp.solve(outer_erm(lam / T), 1.0, steps, initial_guess=v0, options={"ipopt.tol": 1e-10})
    long = tp.solve(outer_erm(lam), T, steps, initial_guess=v0 / T, options={"ipopt.tol": 1e-10})
    assert one.success and long.success
    assert long.cost == pytest.approx(one.cost, abs=1e-6)
    np.testing.assert_allclose(long.u, one.u / T, atol=1e-8)
    s, rescaled = tp.analysis.rescaled_controls(long)
    np.testing.assert_allclose(rescaled, one.u, atol=1e-7)
    np.testing.assert_allclose(s, 0.5 * (one.t[:-1] + one.t[1:]), atol=1e-14)


def test_final_training_error_decays_like_one_over_T():
    """Cost (A) with zero loss reachable: E(x(T)) <= C/T, log-log slope at most -0.9 over T = 1..32."""
    horizons = [1, 2, 4, 8, 16, 32]
    errors, previous = [], None
    for T in horizons:
        prob = outer_erm(1e-2)
        guess = None if previous is None else previous.u * previous.T / T  # the rescaled optimum
        sol = tp.solve(prob, float(T), 20, initial_guess=guess, options={"ipopt.tol": 1e-10})
        assert sol.success
        assert tp.resimulation_error(prob, sol) < 1e-4
        errors.append(prob.training_error(sol.x[-1]))
        previous = sol
    slope = np.polyfit(np.log(horizons), np.log(errors), 1)[0]
    assert slope <= -0.9


def test_training_error_and_accuracy_per_layer():
    prob = NeuralODEClassification(POINTS, LABELS, field="inner", cost="turnpike", weight=1e-2)
    sol = tp.solve(prob, 2.0, dt=0.1)
    assert sol.success
    err = prob.training_error(sol.x)
    assert err.shape == (sol.steps + 1,)
    z = sol.x[0] @ prob.output
    assert err[0] == pytest.approx(np.mean((z - LABELS) ** 2), rel=1e-12)
    assert err[-1] < err[0] and prob.accuracy(sol.x[-1]) == 1.0
    # the flow of new points with the solution's controls reproduces the training trajectories
    np.testing.assert_allclose(prob.flow(sol, POINTS), sol.x, atol=1e-10)


@pytest.mark.parametrize("field", ["inner", "outer", "bottleneck"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus"])
def test_every_field_and_activation_solves_and_resimulates(field, activation):
    prob = NeuralODEClassification(POINTS[:6], LABELS[:6], field=field, activation=activation, hidden=3,
                                   augment=1, cost="turnpike", loss="logistic", weight=1.0)
    sol = tp.solve(prob, 1.0, 20)
    assert sol.success and sol.x.shape == (21, 6, 3)
    assert tp.resimulation_error(prob, sol) < 1e-5


def test_sparse_cost_splits_the_control_and_respects_the_bound():
    prob = NeuralODEClassification(POINTS[:6], LABELS[:6], field="outer", cost="sparse", weight=1e-2, l1_bound=1.0)
    assert prob.split_control and prob.l1 == 1e-2 and prob.l2 == 0.0
    sol = tp.solve(prob, 2.0, 10)
    assert sol.success
    assert np.abs(sol.u).sum(axis=1).max() <= 1.0 + 1e-6


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_datasets_are_seeded_and_labelled(name):
    a, la = DATASETS[name](n=21, seed=3)
    b, lb = DATASETS[name](n=21, seed=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert a.shape[0] == 21 and set(np.unique(la)) == {-1.0, 1.0}


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"field": "deep"}, "unknown field 'deep'"),
        ({"activation": "gelu"}, "unknown activation 'gelu'"),
        ({"cost": "sparse"}, r"l1_bound \(M\) is required"),
        ({"cost": "tracking"}, "tracking_target"),
        ({"field": "bottleneck"}, "hidden"),
        ({"weight": 0.0}, "weight must be a finite number > 0"),
        ({"labels": np.zeros(12)}, "labels must be -1 or \\+1"),
    ],
)
def test_bad_arguments_are_named(kw, match):
    args = {"points": POINTS, "labels": LABELS, **kw}
    with pytest.raises(tp.InputError, match=match):
        NeuralODEClassification(**args)
