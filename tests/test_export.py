"""Exported networks (turnpike.export) against the toolbox's own discrete flow and reduced gradient.

The toolbox flows points with CasADi (the stage function mapped over samples); the NumPy and PyTorch
exports are written independently from the stated forward pass, so agreement to rounding checks both.
"""

import numpy as np
import pytest

import turnpike as tp
from problems import NeuralODEClassification
from problems.datasets import concentric_spheres, rings
from turnpike import export
from turnpike.reduced import ReducedSpace

CASES = [  # (field, activation, hidden, classes, output, clip)
    ("inner", "tanh", None, 2, None, False),
    ("outer", "sigmoid", None, 2, None, True),
    ("bottleneck", "softplus", 5, 2, None, False),
    ("inner", "softplus", None, 3, "trainable", False),
    ("bottleneck", "tanh", 4, 3, None, False),
]


def _problem(field, activation, hidden, classes, output, clip, cost="erm", loss=None):
    if classes == 2:
        points, labels = concentric_spheres(10, 2, seed=1)
    else:
        points, labels = rings(12, classes, seed=1)
    loss = loss or ("squared" if classes == 2 else "cross-entropy")
    return NeuralODEClassification(points, labels, field=field, activation=activation, hidden=hidden,
                                   output=output, clip=clip, loss=loss, cost=cost, augment=1)


def _random_controls(problem, steps, seed):
    """Controls (steps, nu) at a random point, with the constant controls equal on every interval."""
    rng = np.random.default_rng(seed)
    u = rng.normal(scale=0.7, size=(steps, problem.nu))
    u[:, problem.constant_controls] = u[0, problem.constant_controls]
    return u


def _network(problem, u, method, T=2.0):
    """The network that weights u (steps, nu) and ``method`` make: a Solution holding them (no solve)."""
    steps = len(u)
    return tp.Solution(success=False, status="given weights", cost=np.nan, cost_terms={}, stats={"method": method},
                       problem=problem.name, T=T, steps=steps, t=np.linspace(0, T, steps + 1),
                       x=np.zeros((steps + 1, problem.n_samples, problem.D)), u=u,
                       adjoint=np.zeros((steps, problem.n_samples, problem.D)))


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-K{c[3]}")
def test_the_numpy_export_reproduces_the_toolbox_flow(case, method):
    problem = _problem(*case)
    for seed in (3, 4):
        s = _network(problem, _random_controls(problem, 4, seed), method)
        points = np.random.default_rng(0).normal(size=(7, problem.d))
        network = export.to_numpy(problem.network(s).model())
        np.testing.assert_allclose(network(points, layers=True), problem.flow(s, points), rtol=0, atol=1e-12)
        np.testing.assert_allclose(network(points), problem.network(s).scores(points), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(network.predict(points), problem.network(s).predict(points))


@pytest.mark.parametrize("method", ["euler", "rk4"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-K{c[3]}")
def test_the_torch_export_reproduces_the_toolbox_flow(case, method):
    torch = pytest.importorskip("torch")
    problem = _problem(*case)
    s = _network(problem, _random_controls(problem, 4, seed=4), method)
    points = np.random.default_rng(1).normal(size=(6, problem.d))
    module = export.to_torch(problem.network(s).model())
    with torch.no_grad():
        states = module.trajectory(torch.tensor(points)).numpy()
        scores = module(torch.tensor(points)).numpy()
    np.testing.assert_allclose(states, problem.flow(s, points), rtol=0, atol=1e-12)
    np.testing.assert_allclose(scores, problem.network(s).scores(points), rtol=0, atol=1e-12)


def _torch_objective(torch, module, problem, points):
    """Cost (A) of the stated discretisation, ``γ E(x_n) + λ h Σ_k |u_k|²``, written in torch from the module."""
    z = module(torch.tensor(points))
    if problem.classes == 2:
        y = torch.tensor(problem.labels)
        loss = ((z - y) ** 2).mean() if problem.loss == "squared" else torch.nn.functional.softplus(-y * z).mean()
    else:
        loss = torch.nn.functional.cross_entropy(z, torch.tensor(problem.labels), reduction="mean")
    penalty = sum((p ** 2).sum() for p in module.layers.parameters())
    return problem.terminal_weight * loss + problem.weight * module.step * penalty


@pytest.mark.parametrize("case", [
    CASES[0], pytest.param(CASES[2], marks=pytest.mark.slow), pytest.param(CASES[4], marks=pytest.mark.slow)],
    ids=["inner", "bottleneck", "bottleneck-K3"])
def test_torch_backward_gives_the_reduced_gradient(case):
    """At a random point and at the optimum (near zero): ∂J/∂(layer weights) from torch's backward pass through
    the exported module equals the toolbox's reduced gradient (compiled discrete adjoint), entry by entry."""
    torch = pytest.importorskip("torch")
    problem = _problem(*case)
    sol = tp.solve(problem, T=2.0, steps=4, method="rk4", guess_scale=0.5)
    assert sol.success
    rs = ReducedSpace(problem, sol.steps, "rk4")
    p = rs.parameters(sol.T)
    for u in (_random_controls(problem, sol.steps, seed=5), sol.u):
        _, g = rs._value_and_gradient(rs.pack(None, u), p)
        g = g.reshape(sol.steps, problem.nu)
        module = export.to_torch(problem.network(_network(problem, u, "rk4")).model())
        _torch_objective(torch, module, problem, problem.x0_samples[:, : problem.d]).backward()
        shapes = export.weight_shapes(problem.field, problem.D, problem.hidden)
        torch_g = np.stack([np.concatenate([getattr(layer, name).grad.numpy().T.reshape(-1) for name in shapes])
                            for layer in module.layers])  # column-major, as u stores them
        np.testing.assert_allclose(torch_g, g, rtol=0, atol=1e-10)
    assert np.abs(g).max() < 1e-5  # the optimum: a stationary point


def test_save_and_load_round_trip(tmp_path):
    problem = _problem(*CASES[3])
    sol = _network(problem, _random_controls(problem, 3, seed=6), "euler")
    model = problem.network(sol).model(input_shift=[0.5, -0.5], input_scale=[2.0, 3.0])
    export.save(model, tmp_path, training_accuracy=0.5)
    back = export.load(tmp_path)
    points = np.random.default_rng(2).normal(size=(5, 2))
    np.testing.assert_array_equal(export.to_numpy(back)(points), export.to_numpy(model)(points))
    # the standardisation is applied first: the raw points map to the problem's inputs
    np.testing.assert_allclose(export.to_numpy(model)(points * [2.0, 3.0] + [0.5, -0.5]),
                               problem.network(sol).scores(points), rtol=0, atol=1e-12)


def test_a_torch_state_dict_round_trips_through_a_file(tmp_path):
    torch = pytest.importorskip("torch")
    problem = _problem(*CASES[2])
    model = problem.network(_network(problem, _random_controls(problem, 3, seed=7), "rk4")).model()
    export.save(model, tmp_path)
    export.save_torch(model, tmp_path / "model.pt")
    module = export.load_torch(tmp_path)
    points = np.random.default_rng(3).normal(size=(4, 2))
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.tensor(points)).numpy(), export.to_numpy(model)(points), atol=1e-14)
    assert set(torch.load(tmp_path / "model.pt", weights_only=True)) >= {"layers.0.W1", "output.weight"}


def test_bad_exports_are_named(tmp_path):
    problem = _problem(*CASES[0])
    sol = _network(problem, _random_controls(problem, 2, seed=8), "euler")
    model = problem.network(sol).model()
    with pytest.raises(tp.InputError, match=r"points must have shape \(M, 2\), got shape \(3,\)"):
        export.to_numpy(model)(np.zeros(3))
    with pytest.raises(tp.InputError, match="model must be a turnpike.export.NeuralODE, got Solution"):
        export.to_numpy(sol)
    with pytest.raises(tp.InputError, match="input_scale must be positive"):
        problem.network(sol).model(input_scale=[1.0, 0.0])
    with pytest.raises(tp.InputError, match="cannot read a saved network"):
        export.load(tmp_path)
