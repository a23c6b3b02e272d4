"""The projection onto the L1 balls of the split controls, and the spectral projected gradient on them."""

import itertools

import casadi as ca
import numpy as np
import pytest

import turnpike as tp
from turnpike.presolve import project_l1_ball, projected_descent, projected_gradient
from turnpike.reduced import ReducedSpace


def _brute_force_projection(y, bound, upper):
    """The QP ``min |v - y|²/2`` over ``0 <= v <= upper, Σ v <= bound`` by enumeration: every assignment of each
    component to its lower bound, its upper bound or free, with the sum constraint active or not; the equality-
    constrained QP of each in closed form; the best feasible one."""
    n, best = len(y), (np.inf, None)
    for states in itertools.product((0, 1, 2), repeat=n):
        if any(s == 1 and not np.isfinite(upper[i]) for i, s in enumerate(states)):
            continue
        free = np.array([s == 2 for s in states])
        fixed = np.array([0.0 if s == 0 else upper[i] if s == 1 else 0.0 for i, s in enumerate(states)])
        for tight in (False, True):
            v = fixed.copy()
            if tight and not free.any():
                continue
            v[free] = y[free] - ((y[free].sum() + fixed.sum() - bound) / free.sum() if tight else 0.0)
            if np.any(v < -1e-14) or np.any(v > upper + 1e-14) or v.sum() > bound + 1e-12:
                continue
            value = 0.5 * np.sum((v - y) ** 2)
            if value < best[0] - 1e-15:
                best = (value, v)
    return best[1]


def test_the_projection_is_the_brute_force_qp():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 7))
        y = rng.normal(scale=2.0, size=n)
        bound = rng.uniform(0.1, 3.0)
        upper = np.where(rng.random(n) < 0.3, np.inf, rng.uniform(0.1, 2.0, size=n))
        v = project_l1_ball(y[None, :], bound, upper)[0]
        np.testing.assert_allclose(v, _brute_force_projection(y, bound, upper), rtol=0, atol=1e-12)


def test_the_projection_of_many_rows_is_row_by_row():
    rng = np.random.default_rng(1)
    Y = rng.normal(scale=3.0, size=(40, 9))
    upper = np.full(9, np.inf)
    V = project_l1_ball(Y, 2.0, upper)
    assert np.all(V >= 0) and np.all(V.sum(axis=1) <= 2.0 + 1e-12)
    for y, v in zip(Y, V, strict=True):
        np.testing.assert_array_equal(project_l1_ball(y[None], 2.0, upper)[0], v)


def _convex_l1_problem(samples=3):
    """``dx/dt = A x + B u`` from several starts, ``∫ |x - 1|² + λ|u|_1``, ``|u(t)|_1 <= M``: a convex problem."""
    x, u = ca.SX.sym("x", 2), ca.SX.sym("u", 3)
    A = np.array([[0.0, 1.0], [-1.0, -0.2]])
    B = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, -0.5]])
    x0 = np.random.default_rng(2).normal(size=(samples, 2))
    return tp.Problem(state=x, control=u, dynamics=ca.mtimes(A, x) + ca.mtimes(B, u), x0=x0,
                      running_cost=ca.sumsqr(x - 1), l1=0.3, l1_bound=1.5, name="convex-l1")


def test_the_projected_descent_ends_at_a_first_order_point_of_the_convex_problem():
    """Its end point satisfies the projected-gradient condition, and it is IPOPT's optimum (the problem is convex:
    one minimum), to 1e-8 in J once IPOPT does not relax the bounds (its bound_relax_factor, 1e-8 by default, buys
    it a cost lower by about that factor times the multipliers)."""
    problem = _convex_l1_problem()
    T, steps = 4.0, 20
    rs = ReducedSpace(problem, steps, "rk4")
    p = rs.parameters(T)
    start = 0.1 * np.random.default_rng(3).normal(size=(steps, problem.nu))
    result = projected_descent(rs, start, T, max_iter=20000, rel_decrease=0.0, gtol=1e-10)
    V = rs.control_variables(result.u)
    J, g = rs._value_and_gradient(V.reshape(-1), p)
    assert projected_gradient(V, g.reshape(V.shape), problem.l1_bound, rs.control_bounds()[1]) <= 1e-10
    assert np.all(np.abs(result.u).sum(axis=1) <= problem.l1_bound + 1e-12)
    alone = tp.solve(problem, T, steps, presolve="none", formulation="reduced",
                     options={"ipopt.tol": 1e-10, "ipopt.bound_relax_factor": 0.0})
    assert alone.success
    assert J == pytest.approx(alone.cost, abs=1e-8)
    # u is not unique (a saturated stage may trade components of equal price), x is: |x - 1|² is strictly convex
    np.testing.assert_allclose(rs.simulate(result.u, T), alone.x, atol=1e-5)
    assert int(np.sum(V == 0)) > 0  # exact zeros, where IPOPT has small positive numbers
