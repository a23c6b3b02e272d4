"""The inputs learning users bring: label forms, the midpoint integrator, a clipped output, the terminal weight,
λ = 0 where the problem stays well posed, and arguments that do not apply to the chosen field or cost."""

import numpy as np
import pytest

import turnpike as tp
from problems.datasets import concentric_spheres
from problems.neural_ode import NeuralODEClassification
from turnpike.ensemble import EnsembleObjective
from turnpike.reduced import ReducedSpace
from turnpike.transcription import MultipleShooting

rng = np.random.default_rng(0)
POINTS = rng.uniform(-1, 1, (12, 2))
SIGNS = np.sign(POINTS[:, 1])


@pytest.mark.parametrize("form", ["(N,)", "(N, 1)", "0/1", "0/1 (N, 1)"])
def test_every_label_form_gives_the_same_problem(form):
    labels = {"(N,)": SIGNS, "(N, 1)": SIGNS[:, None], "0/1": (SIGNS + 1) / 2,
              "0/1 (N, 1)": ((SIGNS + 1) / 2)[:, None].astype(int)}[form]
    prob = NeuralODEClassification(POINTS, labels, field="outer")
    np.testing.assert_array_equal(prob.labels, SIGNS)
    np.testing.assert_array_equal(prob.data_values[:, 0], SIGNS)


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.ones((12, 2)), r"labels must have shape \(12,\) or \(12, 1\), one per point, got shape \(12, 2\)"),
        (np.ones(11), r"got shape \(11,\)"),
        (np.arange(12) % 3 + 0.5, r"labels must be -1/\+1, 0/1, or the integers 0..K-1, got values \[0.5, 1.5, 2.5\]"),
        (np.arange(12) % 3 - 1, r"got values \[-1.0\]"),
        (np.full(12, 1.0), r"labels have one class only"),
        (np.where(SIGNS > 0, np.nan, 1.0), "labels must be finite"),
    ],
)
def test_bad_labels_are_named(labels, match):
    with pytest.raises(tp.InputError, match=match):
        NeuralODEClassification(POINTS, labels)


def test_midpoint_is_second_order_against_an_adaptive_integration():
    """Resimulation (DOP853, nothing of the transcription) of the midpoint rule's trajectory: the error falls by
    about 4 when the step halves, where Euler's falls by 2 and RK4's by 16."""
    prob = NeuralODEClassification(POINTS, SIGNS, field="inner", cost="turnpike", weight=1e-2)
    u = 0.8 * np.random.default_rng(2).standard_normal((5, prob.nu))
    ratios = {}
    for method in tp.INTEGRATORS:
        errors = []
        for steps in (20, 40):
            x = ReducedSpace(prob, steps, method).simulate(np.repeat(u, steps // 5, axis=0), 2.0)
            sol = tp.Solution(success=True, status="simulated", cost=np.nan, cost_terms={}, stats={},
                              problem=prob.name, T=2.0, steps=steps, t=np.linspace(0, 2.0, steps + 1),
                              x=x.reshape(steps + 1, *prob.state_shape), u=np.repeat(u, steps // 5, axis=0),
                              adjoint=np.zeros((steps, *prob.state_shape)))
            errors.append(tp.resimulation_error(prob, sol))
        ratios[method] = errors[0] / errors[1]
    assert 1.7 < ratios["euler"] < 2.3
    assert 3.4 < ratios["midpoint"] < 4.6
    assert ratios["rk4"] > 12


def test_midpoint_matrix_path_and_clip_agree_with_the_compiled_samples():
    """A clipped bottleneck under the midpoint rule: the lifted matrix path (MX AD), the per-sample path and
    central differences of the cost agree on the value and the gradient."""
    points, labels = concentric_spheres(10, 2, seed=0)
    prob = NeuralODEClassification(points, labels, field="bottleneck", hidden=4, augment=1, clip=True,
                                   output=np.ones(3), terminal_weight=0.5)  # |P x| up to 2.8 at t = 0
    steps, T = 5, 2.0
    rs = ReducedSpace(prob, steps, "midpoint")
    p, y = rs.parameters(T), prob.data_values
    objective = EnsembleObjective(prob, steps, "midpoint")
    assert objective.path == "matrix", objective.reason
    r = np.random.default_rng(1)
    u, v = 0.5 * r.standard_normal((steps, prob.nu)), r.standard_normal((steps, prob.nu))
    J_ref, g_ref = rs.ensemble_cost(u, p)
    J, g = objective.value_and_gradient(u, y, p[0])
    assert J == pytest.approx(J_ref, rel=1e-13)
    np.testing.assert_allclose(g, g_ref, rtol=1e-12, atol=1e-13 * np.abs(g_ref).max())
    eps = 1e-6
    central = (objective.value_and_gradient(u + eps * v, y, p[0])[0]
               - objective.value_and_gradient(u - eps * v, y, p[0])[0]) / (2 * eps)
    assert central == pytest.approx(np.sum(g * v), rel=1e-6)
    x = np.asarray(rs.simulate(u, T)).reshape(steps + 1, *prob.state_shape)
    assert np.abs(prob.outputs(x)).max() <= 1.0
    assert np.abs(x @ prob.output).max() > 1.0  # the clip did act somewhere


def test_terminal_weight_scales_the_terminal_loss_only():
    """At fixed controls, J(γ = 2) - J(γ = 0) = 2 E(x(T)) with E computed in numpy from the flowed states."""
    u = 0.5 * np.random.default_rng(3).standard_normal((8, 2 * 2 * 2 + 2))
    costs = {}
    for gamma in (0.0, 2.0):
        prob = NeuralODEClassification(POINTS, SIGNS, field="inner", cost="turnpike", terminal_weight=gamma)
        rs = ReducedSpace(prob, 8, "rk4")
        costs[gamma] = rs._value_and_gradient(u.reshape(-1), rs.parameters(1.5))[0]
    x = ReducedSpace(prob, 8, "rk4").simulate(u, 1.5).reshape(9, *prob.state_shape)
    E = np.mean((x[-1] @ prob.output - SIGNS) ** 2)
    assert costs[2.0] - costs[0.0] == pytest.approx(2 * E, rel=1e-10)


def test_zero_weight_solves_where_the_controls_are_bounded():
    prob = NeuralODEClassification(POINTS[:6], SIGNS[:6], field="outer", cost="turnpike", weight=0.0,
                                   control_bound=0.5)
    assert prob.l2 == 0.0
    sol = tp.solve(prob, 2.0, 10)
    assert sol.success and np.abs(sol.u).max() <= 0.5 + 1e-8
    sparse = NeuralODEClassification(POINTS[:6], SIGNS[:6], field="outer", cost="sparse", weight=0.0, l1_bound=1.0)
    sol = tp.solve(sparse, 2.0, 10)
    assert sol.success and np.abs(sol.u).sum(axis=1).max() <= 1.0 + 1e-6


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"weight": 0.0}, "weight=0 leaves cost 'turnpike' without a minimiser in general"),
        ({"weight": -1.0}, "weight must be a finite number >= 0"),
        ({"hidden": 3}, "hidden=3 does not apply to field='inner'"),
        ({"cost": "erm", "alpha": 2.0}, "alpha=2.0 does not apply to cost='erm'"),
        ({"cost": "sparse", "l1_bound": 1.0, "alpha": 1.0}, "alpha=1.0 does not apply to cost='sparse'"),
        ({"l1_bound": 1.0}, "l1_bound=1.0 does not apply to cost='turnpike'"),
        ({"tracking_target": np.zeros((12, 2))}, r"tracking_target \(an array\) does not apply to cost='turnpike'"),
        ({"cost": "sparse", "l1_bound": 1.0, "terminal_weight": 1.0}, "terminal_weight=1.0 does not apply"),
        ({"cost": "erm", "terminal_weight": 0.0}, "terminal_weight=0 leaves cost 'erm' without a loss"),
        ({"terminal_weight": np.inf}, "terminal_weight must be a finite number >= 0"),
        ({"clip": "yes"}, "clip must be True or False, got 'yes'"),
    ],
)
def test_arguments_that_do_not_apply_are_errors(kw, match):
    with pytest.raises(tp.InputError, match=match):
        NeuralODEClassification(POINTS, SIGNS, **kw)


def test_the_catalogue_entry_passes_the_new_arguments():
    prob = NeuralODEClassification.example(n_points=10, clip=True, terminal_weight=0.0)
    assert prob.clip and prob.terminal_weight == 0.0
    with pytest.raises(tp.InputError, match="hidden=4 does not apply to field='outer'"):
        NeuralODEClassification.example(field="outer", hidden=4)


def test_a_trainable_output_map_is_the_ridge_regression_of_the_last_layer():
    """Cost (A) with ``output="trainable"``: the states do not depend on θ = (P, b), so at the optimum θ
    minimises ``(γ/N) Σ_i (P x_i(T) + b - y_i)² + λ T |θ|²`` for the final states: the ridge regression
    ``θ = (γ/N ΦᵀΦ + λT I)⁻¹ (γ/N) Φᵀ y`` with rows ``Φ_i = (x_i(T), 1)``. The map is one value on every interval."""
    prob = NeuralODEClassification.example(n_points=16, field="outer", cost="erm", output="trainable", weight=0.05)
    T = 2.0
    sol = tp.solve(prob, T, steps=10, method="euler", options={"ipopt.tol": 1e-12})
    assert sol.success and sol.stats["formulation"] == "reduced"
    theta = sol.u[:, prob.n_weights:]
    assert np.all(theta == theta[0]) and prob.control_names[-3:] == ["P[1]", "P[2]", "bias"]
    Phi = np.column_stack([sol.x[-1], np.ones(prob.n_samples)])
    N, gamma = prob.n_samples, prob.terminal_weight
    ridge = np.linalg.solve(gamma / N * Phi.T @ Phi + prob.weight * T * np.eye(3), gamma / N * Phi.T @ prob.labels)
    np.testing.assert_allclose(theta[0], ridge, atol=1e-7)
    P, b = prob.output_map(sol.u)
    np.testing.assert_allclose(prob.outputs(sol.x[-1], sol.u), sol.x[-1] @ P + b)
    assert prob.training_error(sol.x[-1], sol.u) == pytest.approx(sol.cost_terms["terminal"], rel=1e-10)
    assert prob.accuracy(prob.flow(sol, prob.x0_samples)[-1], sol.u) == prob.accuracy(sol.x[-1], sol.u)
    with pytest.raises(tp.InputError, match=r"the output map is trainable: pass the controls u \(sol.u\)"):
        prob.accuracy(sol.x[-1])


@pytest.mark.parametrize("kw, match", [
    ({"cost": "tracking"}, r"output='trainable' does not apply to cost='tracking': its target is set by a fixed P"),
    ({"cost": "sparse", "l1_bound": 1.0}, r"output='trainable' does not apply to cost='sparse'"),
    ({"output": "learned"}, r"output must be an array of shape \(2,\) or 'trainable', got 'learned'"),
])
def test_a_trainable_output_map_is_refused_where_it_does_not_apply(kw, match):
    points, labels = concentric_spheres(6, 2, seed=0)
    with pytest.raises(tp.InputError, match=match):
        NeuralODEClassification(points, labels, **{"output": "trainable", **kw})


def test_a_trained_network_classifies_new_points():
    """On the training points the network's scores are the solution's last-layer outputs (the same flow, the same
    integrator); on fresh points of the same two circles (another seed's phases) a trained network generalises;
    labels are read in the training forms; inputs of the wrong shape or a solution of another problem are
    named errors."""
    prob = NeuralODEClassification.example(n_points=40, field="inner")
    sol = tp.solve(prob, 5.0, steps=50, method="midpoint")
    net = prob.network(sol)
    points = prob.x0_samples[:, : prob.d]
    np.testing.assert_allclose(net.scores(points), prob.outputs(sol.x[-1]), rtol=0, atol=1e-12)
    assert net.accuracy(points, prob.labels) == prob.accuracy(sol.x[-1]) == 1.0
    fresh, labels = concentric_spheres(200, 2, radii=(1.0, 2.0), seed=7)
    # the same network as the NLP of a problem posed on the fresh points simulates it (mapaccum of its stage)
    posed = NeuralODEClassification(fresh, labels, field="inner")
    states = MultipleShooting(posed, 50, "midpoint").simulate(sol.u, 5.0)
    np.testing.assert_allclose(prob.flow(sol, fresh), states, rtol=0, atol=1e-12)
    assert net.accuracy(fresh, labels) == posed.accuracy(states[-1])
    assert net.accuracy(fresh, labels) >= 0.9  # generalisation from 40 points to 200 (measured 0.93)
    assert net.accuracy(fresh, (labels + 1) / 2) == net.accuracy(fresh, labels[:, None])
    assert set(np.unique(net.predict(fresh))) <= {-1.0, 1.0}
    with pytest.raises(tp.InputError, match=r"points must have shape \(M, 2\), got shape \(5, 3\)"):
        net.predict(np.zeros((5, 3)))
    with pytest.raises(tp.InputError, match=r"labels must have shape \(200,\) or \(200, 1\)"):
        net.accuracy(fresh, labels[:10])
    other = NeuralODEClassification.example(n_points=40, field="outer")
    with pytest.raises(tp.InputError, match="a solution of another problem"):
        other.network(sol)
