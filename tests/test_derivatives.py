"""Stage-wise derivatives (turnpike.derivatives) against CasADi's AD of the whole NLP, and in solves."""

import casadi as ca
import numpy as np
import pytest

import turnpike as tp
from problems import LinearQuadratic, Pendulum
from turnpike.reduced import ReducedSpace
from turnpike.transcription import MultipleShooting


def ensemble_with_data(**weights):
    """A small neural-ODE-like ensemble: 3 samples, per-sample labels, dx/dt = W tanh(a x + b)."""
    x, u, y = ca.SX.sym("x", 2), ca.SX.sym("u", 4), ca.SX.sym("y")
    W = ca.reshape(u[:2], 2, 1)
    return tp.Problem(
        state=x, control=u, data=y, data_values=[[1.0], [-1.0], [0.5]],
        x0=[[0.0, 1.0], [1.0, -0.5], [-0.5, 0.3]],
        dynamics=W @ ca.tanh(u[2] * x[0] * x[1] + u[3]) - 0.1 * x,
        running_cost=(x[1] - y) ** 2 + 0.1 * ca.sumsqr(u),
        terminal_cost=(x[0] * x[1] - y) ** 2,
        **weights,
    )


def pendulum_l2_terminal():
    x, u = ca.SX.sym("x", 2), ca.SX.sym("u")
    return tp.Problem(
        state=x, control=u, x0=[0.3, 0.0], l2=0.7,
        dynamics=ca.vertcat(x[1], -ca.sin(x[0]) - 0.5 * x[1] + u),
        running_cost=0.5 * ((x[0] - 1) ** 2 + x[1] ** 2),
        terminal_cost=2.0 * ca.cos(x[0]) * x[1] ** 2 + (x[0] - 0.8) ** 2,
    )


def pendulum_l1(l1=0.4, l1_bound=None):
    x, u = ca.SX.sym("x", 2), ca.SX.sym("u", 2)
    return tp.Problem(
        state=x, control=u, x0=[0.0, 0.0], l1=l1, l1_bound=l1_bound, l2=0.1,
        control_lower=[-2.0, -1.0], control_upper=[2.0, 3.0],
        dynamics=ca.vertcat(x[1], -ca.sin(x[0]) - 0.5 * x[1] + u[0] * ca.cos(x[0]) + u[1]),
        running_cost=0.5 * ((x[0] - 1) ** 2 + x[1] ** 2),
        terminal_cost=(x[0] - 1) ** 2,
    )


CASES = {
    "lq-example-rk4": (LinearQuadratic.example, 30, "rk4"),
    "pendulum-euler": (Pendulum, 25, "euler"),
    "pendulum-rk4": (Pendulum, 25, "rk4"),
    "ensemble-data-rk4": (ensemble_with_data, 8, "rk4"),
    "ensemble-data-l1-euler": (lambda: ensemble_with_data(l1=0.2, l1_bound=3.0), 8, "euler"),
    "l1-and-l1-bound-rk4": (lambda: pendulum_l1(0.4, 1.5), 12, "rk4"),
    "l1-only-rk4": (lambda: pendulum_l1(0.4, None), 12, "rk4"),
    "l1-bound-only-euler": (lambda: pendulum_l1(0.0, 1.5), 12, "euler"),
    "l2-terminal-rk4": (pendulum_l2_terminal, 20, "rk4"),
    "one-step": (pendulum_l2_terminal, 1, "rk4"),
    "scalar-state-and-control": (lambda: LinearQuadratic(A=[[0.5]], B=[[1.0]], x0=[1.0], target=[2.0]), 5, "rk4"),
}


def casadi_derivatives(nlp: dict) -> dict[str, ca.Function]:
    """CasADi's AD of the whole NLP, in the same signatures (the reference)."""
    w, p, f, g = nlp["x"], nlp["p"], nlp["f"], nlp["g"]
    lam_f, lam_g = ca.MX.sym("lam_f"), ca.MX.sym("lam_g", g.numel())
    hess = ca.triu(ca.hessian(lam_f * f + ca.dot(lam_g, g), w)[0])
    return {
        "grad_f": ca.Function("grad_f", [w, p], [f, ca.gradient(f, w)]),
        "jac_g": ca.Function("jac_g", [w, p], [g, ca.jacobian(g, w)]),
        "hess_lag": ca.Function("hess_lag", [w, p, lam_f, lam_g], [hess]),
    }


@pytest.mark.parametrize("case", list(CASES))
def test_stagewise_derivatives_equal_casadi_ad(case):
    make, steps, method = CASES[case]
    prob = make()
    ms = MultipleShooting(prob, steps, method)
    mine, ref = ms.derivatives(), casadi_derivatives(ms.nlp)
    assert ms.derivatives() is mine  # built once

    # IPOPT reads f's gradient and g densely; the Hessian is its upper triangle.
    assert mine["grad_f"].sparsity_out(1).is_dense() and mine["jac_g"].sparsity_out(0).is_dense()
    assert mine["hess_lag"].sparsity_out(0).is_triu()

    rng = np.random.default_rng(7)
    ng = ms.nlp["g"].numel()
    for _ in range(3):
        w = rng.standard_normal(ms.layout.n_w)
        p = np.concatenate([[rng.uniform(0.05, 0.5)], rng.standard_normal(prob.ny * prob.n_samples)])
        lam_f, lam_g = rng.standard_normal(), rng.standard_normal(ng)
        for name, args in (("grad_f", (w, p)), ("jac_g", (w, p)), ("hess_lag", (w, p, lam_f, lam_g))):
            a, b = mine[name](*args), ref[name](*args)
            for out_a, out_b in zip(a if isinstance(a, tuple) else [a], b if isinstance(b, tuple) else [b],
                                    strict=True):
                np.testing.assert_allclose(
                    ca.DM(out_a).full(), ca.DM(out_b).full(), rtol=1e-12, atol=1e-12, err_msg=f"{case}: {name}"
                )


def test_ipopt_uses_stagewise_derivatives_and_reaches_fatrops_optimum():
    prob = Pendulum()
    a = tp.solve(prob, T=6.0, steps=60, options={"ipopt.tol": 1e-10})
    b = tp.solve(prob, T=6.0, steps=60, solver="fatrop", options={"fatrop.tol": 1e-10})
    assert a.success and b.success
    assert a.stats["derivatives"] == "stage-wise" and b.stats["derivatives"] == "casadi"
    np.testing.assert_allclose(a.u, b.u, atol=1e-7)
    np.testing.assert_allclose(a.x, b.x, atol=1e-7)
    np.testing.assert_allclose(a.adjoint, b.adjoint, atol=1e-7)
    np.testing.assert_allclose(a.cost, b.cost, rtol=1e-9)

    lq = LinearQuadratic.example()
    a, b = tp.solve(lq, T=20.0, steps=200), tp.solve(lq, T=20.0, steps=200, solver="fatrop")
    assert a.success and b.success and a.stats["derivatives"] == "stage-wise"
    np.testing.assert_allclose(a.u, b.u, atol=1e-7)
    np.testing.assert_allclose(a.cost, b.cost, rtol=1e-9)


@pytest.mark.parametrize("make", [lambda: pendulum_l1(0.4, 1.5), lambda: ensemble_with_data(l2=0.05)])
def test_same_optimum_as_casadi_ad(make):
    """With an L1 bound (inequality rows) and for an ensemble with data: stage-wise == CasADi's AD."""
    opts = {"ipopt.tol": 1e-10}
    a = tp.solve(make(), T=4.0, steps=40, options=opts, presolve="none")
    b = tp.solve(make(), T=4.0, steps=40, options=opts, presolve="none", derivatives="casadi")
    assert a.success and b.success
    assert (a.stats["derivatives"], b.stats["derivatives"]) == ("stage-wise", "casadi")
    np.testing.assert_allclose(a.u, b.u, atol=1e-7)
    np.testing.assert_allclose(a.cost, b.cost, rtol=1e-9)


def test_escape_hatches():
    prob = Pendulum()
    # limited-memory Hessian: no hess_lag is needed, the first derivatives still are stage-wise
    lbfgs = tp.solve(prob, T=4.0, steps=40, options={"ipopt.hessian_approximation": "limited-memory"})
    exact = tp.solve(prob, T=4.0, steps=40)
    assert lbfgs.success and lbfgs.stats["derivatives"] == "stage-wise"
    np.testing.assert_allclose(lbfgs.u, exact.u, atol=1e-5)

    # the user's own derivative functions are used as given
    ms = MultipleShooting(prob, 40, "rk4")
    own = tp.solve(prob, T=4.0, steps=40, options={"hess_lag": casadi_derivatives(ms.nlp)["hess_lag"]})
    assert own.success and own.stats["derivatives"] == "user"
    np.testing.assert_allclose(own.u, exact.u, atol=1e-7)
    # another function that prints the same is another solver, not the cached one
    other = tp.solve(prob, T=4.0, steps=40, options={"hess_lag": casadi_derivatives(ms.nlp)["hess_lag"]})
    assert not other.stats["reused_solver"]

    with pytest.raises(tp.InputError, match="derivatives='stage-wise' is not possible"):
        tp.solve(prob, T=4.0, steps=40, solver="fatrop", derivatives="stage-wise")
    with pytest.raises(tp.InputError, match="derivatives"):
        tp.solve(prob, T=4.0, steps=40, derivatives="exact")


def neural_ode_inner(**kw):
    """Five two-circle points through the inner tanh field (the learning problems' model)."""
    from problems.datasets import concentric_spheres
    from problems.neural_ode import NeuralODEClassification

    points, labels = concentric_spheres(5, 2, radii=(1.0, 2.0), seed=0)
    return NeuralODEClassification(points, labels, **kw)


REDUCED_CASES = {
    "ensemble-data-rk4": (ensemble_with_data, 8, "rk4"),
    "ensemble-data-l1-bound-euler": (lambda: ensemble_with_data(l1=0.2, l1_bound=3.0), 8, "euler"),
    "neural-ode-turnpike-rk4": (lambda: neural_ode_inner(cost="turnpike"), 6, "rk4"),
    "neural-ode-sparse-logistic-rk4": (
        lambda: neural_ode_inner(cost="sparse", l1_bound=3.0, loss="logistic", augment=1), 5, "rk4"),
    "one-sample-pendulum": (pendulum_l2_terminal, 10, "rk4"),
}


@pytest.mark.parametrize("case", list(REDUCED_CASES))
def test_reduced_derivatives_equal_casadi_ad(case):
    """The condensed gradient and Hessian of the reduced NLP (turnpike.reduced) against CasADi's AD of it."""
    make, steps, method = REDUCED_CASES[case]
    rs = ReducedSpace(make(), steps, method)
    mine, ref = rs.derivatives(), casadi_derivatives(rs.nlp)
    rng = np.random.default_rng(3)
    n_w, ng = rs.nlp["x"].numel(), rs.nlp["g"].numel()
    for _ in range(2):
        w = 0.5 * rng.standard_normal(n_w)
        p = rs.parameters(rng.uniform(0.5, 3.0))
        lam_f = rng.uniform(0.5, 2.0)
        J, grad = mine["grad_f"](w, p)
        J_ref, grad_ref = ref["grad_f"](w, p)
        np.testing.assert_allclose(float(J), float(J_ref), rtol=1e-12)
        np.testing.assert_allclose(grad.full(), grad_ref.full(), rtol=1e-10, atol=1e-12, err_msg=case)
        H_ref = ca.densify(ref["hess_lag"](w, p, lam_f, np.zeros(ng))).full()
        for stages in (steps, 3, 1):  # one block of stages; blocks of 3 (the last one shorter); one stage each
            rs.hessian_block_columns = stages * rs.nu
            H = ca.densify(mine["hess_lag"](w, p, lam_f, np.zeros(ng))).full()
            np.testing.assert_allclose(H, H_ref, rtol=1e-10, atol=1e-11, err_msg=f"{case}, {stages} stages per block")


def test_compiled_hessian_blocks_equal_casadi_ad(monkeypatch):
    """The multiple-shooting Hessian and constraint Jacobian from compiled sample-stage blocks (lane code, chosen
    above a work threshold, here forced) equal CasADi's AD of the NLP, with the L1 split, an L1 bound, and IPOPT's
    σ = 0 (restoration)."""
    from turnpike import derivatives
    from turnpike.compiled import compiler

    monkeypatch.setattr(derivatives, "COMPILE_WORK", 0)
    prob = ensemble_with_data(l1=0.2, l1_bound=3.0, l2=0.3)
    ms = MultipleShooting(prob, 6, "rk4")
    derivatives_, ref = ms.derivatives(), casadi_derivatives(ms.nlp)
    mine = derivatives_["hess_lag"]
    if compiler() is not None:
        assert mine.evaluation == "compiled lane code"
    rng = np.random.default_rng(11)
    for lam_f in (1.3, 0.0):
        w = rng.standard_normal(ms.layout.n_w)
        p = ms.parameters(2.0)
        lam_g = rng.standard_normal(ms.nlp["g"].numel())
        np.testing.assert_allclose(ca.DM(mine(w, p, lam_f, lam_g)).full(),
                                   ca.DM(ref["hess_lag"](w, p, lam_f, lam_g)).full(), rtol=1e-12, atol=1e-12)
        for a, b in zip(derivatives_["jac_g"](w, p), ref["jac_g"](w, p), strict=True):
            np.testing.assert_allclose(ca.DM(a).full(), ca.DM(b).full(), rtol=1e-12, atol=1e-12)
