"""K-class neural-ODE classification: labels, losses, gradients, training, and the turnpike analysis."""

import casadi as ca
import numpy as np
import pytest
from scipy.special import logsumexp

import turnpike as tp
from problems import NeuralODEClassification
from problems.datasets import rings
from problems.neural_ode import class_labels
from turnpike.reduced import ReducedSpace


def _rings(n=12, **kw):
    points, labels = rings(n, 3, seed=0)
    return NeuralODEClassification(points, labels, **{"loss": "cross-entropy", **kw})


def test_labels_and_classes():
    assert class_labels([0, 1, 2, 1], 4)[0] == 3
    assert class_labels([0, 1, 0, 1], 4) == (2, pytest.approx(np.array([-1.0, 1.0, -1.0, 1.0])))  # two classes: ±1
    K, y = class_labels([0, 2, 1], 3, classes=5)  # a class without a point, declared
    assert K == 5 and y.dtype.kind == "i"
    with pytest.raises(tp.InputError, match="label 3 is out of range for classes=3: labels are 0..2"):
        class_labels([0, 1, 3], 3, classes=3)
    prob = _rings()
    assert (prob.classes, prob.augment, prob.D, prob.ny) == (3, 1, 3, 3)  # augmented so that P = I exists
    np.testing.assert_array_equal(prob.data_values, np.eye(3)[prob.labels])
    with pytest.raises(tp.InputError, match="loss='logistic' is for two classes, the labels have 3"):
        _rings(loss="logistic")
    with pytest.raises(tp.InputError, match=r"the default output map reads the last 3 coordinates, and the state has"
                                            r" D = 2: give augment >= 1"):
        _rings(augment=0)
    with pytest.raises(tp.InputError, match="output must be of full row rank 3"):
        _rings(augment=1, output=np.ones((3, 3)))


def test_the_cross_entropy_is_the_log_sum_exp_formula_without_overflow():
    """The problem's numeric error and its symbolic loss (CasADi) against scipy's logsumexp, at scores up to 1e3."""
    prob = _rings(n=6)
    rng = np.random.default_rng(0)
    x = rng.normal(scale=300.0, size=(4, prob.n_samples, prob.D))  # P = I: the scores are the states
    expected = (logsumexp(x, axis=-1) - np.take_along_axis(x, prob.labels[None, :, None], -1)[..., 0]).mean(-1)
    np.testing.assert_allclose(prob.training_error(x), expected, rtol=1e-13)
    z, y = ca.SX.sym("z", 3), ca.SX.sym("y", 3)
    loss = ca.Function("loss", [z, y], [prob._loss(z, y)])
    for scores in x[0]:
        for k in range(3):
            value = float(loss(scores, np.eye(3)[k]))
            assert value == pytest.approx(logsumexp(scores) - scores[k], rel=1e-13, abs=1e-12)
            assert np.isfinite(value)


@pytest.mark.parametrize("method", ["euler", "rk4"])
@pytest.mark.parametrize("kw", [{}, {"loss": "squared"}, {"output": "trainable", "guess_scale": 1}],
                         ids=["cross-entropy", "squared", "trainable"])
def test_the_reduced_gradient_against_central_differences(method, kw):
    """Cost (B): the running cross-entropy through the integrator's quadrature and the terminal loss."""
    kw = dict(kw)
    kw.pop("guess_scale", None)
    prob = _rings(n=6, **kw)
    steps, T = 3, 1.5
    rs = ReducedSpace(prob, steps, method)
    p = rs.parameters(T)
    u = np.random.default_rng(1).normal(scale=0.6, size=(steps, prob.nu))
    u[:, prob.constant_controls] = u[0, prob.constant_controls]
    w = rs.pack(None, u)
    J, g = rs._value_and_gradient(w, p)
    eps = 1e-6
    fd = np.array([(rs._value_and_gradient(w + eps * e, p)[0] - rs._value_and_gradient(w - eps * e, p)[0]) / (2 * eps)
                   for e in np.eye(w.size)])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-7)


def test_the_label_target_is_the_minimum_norm_move_onto_the_zero_error_set():
    P = np.array([[1.0, 0.5, 0], [0, 1, 0], [0.3, 0, 1]])
    prob = _rings(n=9, loss="squared", cost="tracking", augment=1, output=P)
    x0, target = prob.x0_samples, prob.label_target()
    np.testing.assert_allclose(target @ prob.output.T, np.eye(3)[prob.labels], atol=1e-12)
    for i in range(prob.n_samples):  # least squares' minimum-norm solution of P d = e_y - P x
        d = np.linalg.lstsq(prob.output, np.eye(3)[prob.labels[i]] - prob.output @ x0[i], rcond=None)[0]
        np.testing.assert_allclose(target[i] - x0[i], d, atol=1e-12)
    np.testing.assert_allclose(prob.tracking_target, target)


def test_three_rings_train_to_full_accuracy_with_the_turnpike_analysis():
    """Cross-entropy, cost (B): a certified optimum with every training point and fresh points of the rings right;
    the error that the CasADi objective reports is the numpy one; the static problem and the report run."""
    prob = _rings(n=30)
    sol = tp.solve(prob, T=5.0, steps=20, guess_scale=1.0)
    assert sol.success
    assert prob.accuracy(sol.x[-1]) == 1.0
    assert sol.cost_terms["terminal"] == pytest.approx(prob.training_error(sol.x[-1]), rel=1e-10)
    fresh, labels = rings(60, 3, seed=7, noise=0.02)
    assert prob.network(sol).accuracy(fresh, labels) >= 0.95
    static = tp.solve_static(prob)
    report = tp.turnpike_report(sol, static, problem=prob)
    assert static.success and np.all(np.isfinite(report.distances.total))
    # the static optimum of cost (B) classifies as well: u = 0 at the zero-error states it reaches
    assert prob.accuracy(static.x) == 1.0
