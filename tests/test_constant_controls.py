"""Controls constant in time (``Problem(constant_controls=...)``): parameters such as a trainable output map."""

import casadi as ca
import numpy as np
import pytest
from scipy.optimize import minimize

import turnpike as tp
from turnpike.reduced import ReducedSpace


def relaxation(T_weight: float = 0.0, **kw) -> tp.Problem:
    """``dx/dt = -x + θ + v(t)``, running cost ``(x - 1)²``, terminal ``γ (x + θ - 2)²``, two samples."""
    x, u = ca.SX.sym("x"), ca.SX.sym("u", 2)  # u = (v, θ)
    return tp.Problem(state=x, control=u, dynamics=-x + u[1] + u[0], running_cost=(x - 1) ** 2,
                      terminal_cost=T_weight * (x + u[1] - 2) ** 2, x0=[[0.0], [0.5]], constant_controls=[1],
                      **kw)


def test_a_constant_control_alone_matches_the_closed_form():
    """``dx/dt = -x + θ``, ``x(0) = 0``, ``J(θ) = ∫_0^T (x - 1)² dt + λ T θ²`` with ``x = θ (1 - e^{-t})``:
    ``J = A θ² - 2 B θ + T + λ T θ²``, ``A = T - 2(1 - e^{-T}) + (1 - e^{-2T})/2``, ``B = T - (1 - e^{-T})``,
    minimised by ``θ* = B / (A + λ T)``. RK4 with h = 0.01 agrees to its O(h⁴) error."""
    x, theta = ca.SX.sym("x"), ca.SX.sym("theta")
    lam, T = 0.3, 4.0
    prob = tp.Problem(state=x, control=theta, dynamics=-x + theta, running_cost=(x - 1) ** 2, x0=[0.0], l2=lam,
                      constant_controls=[0])
    sol = tp.solve(prob, T, steps=400, options={"ipopt.tol": 1e-12})
    A = T - 2 * (1 - np.exp(-T)) + (1 - np.exp(-2 * T)) / 2
    B = T - (1 - np.exp(-T))
    exact = B / (A + lam * T)
    assert sol.success and sol.stats["formulation"] == "reduced"
    assert sol.stats["formulation_reason"] == "the problem has constant controls"
    assert np.all(sol.u == sol.u[0])  # one value on every interval, exactly
    assert sol.u[0, 0] == pytest.approx(exact, rel=1e-8)
    assert sol.cost == pytest.approx(A * exact**2 - 2 * B * exact + T + lam * T * exact**2, rel=1e-8)
    np.testing.assert_allclose(sol.x[:, 0], exact * (1 - np.exp(-sol.t)), atol=1e-8)


def test_constant_and_time_varying_controls_match_a_direct_minimisation_of_the_same_sum():
    """The Euler scheme written out here (not the toolbox's), minimised over (v_0, ..., v_{n-1}, θ) by BFGS:
    ``x_{i,k+1} = x_{i,k} + h(-x_{i,k} + θ + v_k)``, ``J = Σ_k h ((1/N) Σ_i (x_{i,k} - 1)² + λ(v_k² + θ²))
    + (γ/N) Σ_i (x_{i,n} + θ - 2)²``; φ reads θ, which the reduced path carries in the state."""
    lam, gamma, T, n = 0.1, 2.0, 2.0, 10
    prob = relaxation(gamma, l2=lam)
    h, x0 = T / n, prob.x0_samples[:, 0]

    def J(z):
        v, theta = z[:n], z[n]
        x, total = x0.copy(), 0.0
        for k in range(n):
            total += h * (np.mean((x - 1) ** 2) + lam * (v[k] ** 2 + theta**2))
            x = x + h * (-x + theta + v[k])
        return total + gamma * np.mean((x + theta - 2) ** 2)

    direct = minimize(J, np.zeros(n + 1), method="BFGS", options={"gtol": 1e-12})
    sol = tp.solve(prob, T, steps=n, method="euler", options={"ipopt.tol": 1e-12})
    assert sol.success and np.all(sol.u[:, 1] == sol.u[0, 1])
    assert sol.cost == pytest.approx(direct.fun, rel=1e-9)
    np.testing.assert_allclose(sol.u[:, 0], direct.x[:n], atol=1e-6)
    assert sol.u[0, 1] == pytest.approx(direct.x[n], abs=1e-6)
    assert J(np.append(sol.u[:, 0], sol.u[0, 1])) == pytest.approx(sol.cost, rel=1e-12)


@pytest.mark.parametrize("kw", [{"l2": 0.1}, {"l1": 0.05, "l2": 0.1}])
def test_the_derivatives_in_the_copies_are_those_of_their_function(kw):
    """Each constant control has a copy per interval; the NLP's J(copies) is the problem's J at their means plus
    ``(h/2) Σ (copy - mean)²``. Its gradient and Hessian (dense; and the Hessian-vector product without the L1
    split) against central differences of J and of the gradient, at copies that do not agree."""
    prob = relaxation(1.0, **kw)
    rs = ReducedSpace(prob, 5, "rk4")
    p = rs.parameters(1.5)
    w = np.random.default_rng(0).uniform(0.1, 1.0, rs.steps * rs.n_v)  # positive: the split's V >= 0
    J, g = rs._value_and_gradient(w, p)
    eps = 1e-6
    basis = np.eye(w.size)
    fd_g = np.array([(rs._value_and_gradient(w + eps * e, p)[0] - rs._value_and_gradient(w - eps * e, p)[0])
                     / (2 * eps) for e in basis])
    np.testing.assert_allclose(g, fd_g, atol=1e-8)
    fd_H = np.array([(rs._value_and_gradient(w + eps * e, p)[1] - rs._value_and_gradient(w - eps * e, p)[1])
                     / (2 * eps) for e in basis])
    H = rs.hessian(w.reshape(rs.steps, rs.n_v), p)
    np.testing.assert_allclose(H, fd_H, atol=1e-6)
    if not prob.split_control:
        d = np.random.default_rng(1).standard_normal((rs.steps, rs.n_v))
        np.testing.assert_allclose(rs.hessian_vector(w.reshape(rs.steps, -1), p, d).reshape(-1), H @ d.reshape(-1),
                                   atol=1e-10)
    # J is the problem's J at the means plus the spread of the copies
    copies = w.reshape(rs.steps, rs.n_v)
    tied = rs._tie(copies)
    assert J == pytest.approx(rs._value_and_gradient(tied.reshape(-1), p)[0]
                              + p[0] / 2 * np.sum((copies - tied)[:, rs._constant] ** 2), rel=1e-12)


def test_constant_controls_are_refused_where_they_cannot_be_kept():
    prob = relaxation()
    with pytest.raises(tp.InputError, match=r"constant_controls \[1\] are solved by the reduced formulation with "
                                            r"IPOPT only, got formulation='multiple-shooting'"):
        tp.solve(prob, 1.0, steps=5, formulation="multiple-shooting")
    with pytest.raises(tp.InputError, match="solver='fatrop'"):
        tp.solve(prob, 1.0, steps=5, solver="fatrop")
    x, u = ca.SX.sym("x"), ca.SX.sym("u", 2)
    assert tp.Problem(state=x, control=u, dynamics=-x + u[0], x0=[0.0],
                      constant_controls=(j for j in [1])).constant_controls == (1,)
    for bad in ([2], [0, 0], [0.5], [True], "a", "1", 1):
        with pytest.raises(tp.InputError, match=r"constant_controls must be distinct indices of the control's "
                                                r"components, 0 to 1, got"):
            tp.Problem(state=x, control=u, dynamics=-x + u[0], x0=[0.0], constant_controls=bad)
    with pytest.raises(tp.InputError, match=r"terminal_cost must not depend on the control \(other than its "
                                            r"constant_controls\)"):
        tp.Problem(state=x, control=u, dynamics=-x + u[0], terminal_cost=x * u[0], x0=[0.0], constant_controls=[1])
