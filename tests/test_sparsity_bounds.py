"""The sparsity paper's bounds under cost (C), against the measured stopping time and the error at T*.

Cost (C) on the grid: J = Σ_k q_k + λ h Σ_k |u_k|_1, |u_k|_1 <= M. A minimiser costs at most J_ref, the cost of an
admissible control that reaches zero error and stops; with L a lower bound of Σ q_k over admissible controls,
λ h Σ|u_k|_1 <= J_ref - L, so T* <= (J_ref - L)/(λM) + h when u is saturated wherever it is nonzero, and
E(x(T*)) <= J_ref/(T - T*) (the states rest after T*). (turnpike.analysis.learning.sparsity_bounds.)

Scalar worked case (docs/mathematics.md §1): dx/dt = u, L = ½(x - y)², x(0) - y = 2, M = 1, λ = 0.3. The
hypotheses hold: f(x, 0) = 0; u_ref = -1 on (0, 2) reaches zero error; the optimum is u = -1 on (0, T*) then 0
(saturated, no gap). Independent values: RK4 is exact for dx/dt = const and its cost quadrature (Simpson) for the
quadratic ½(2 - t)², so J_ref = ∫_0^2 ½(2 - t)² dt + 0.3·2 = 4/3 + 0.6; the speed limit |dx/dt| <= 1 gives
L = 4/3 (the same curve), so the bound is T* <= 2 + h; the exact optimum T* = 2 - r with r² + (T - 2) r - λ = 0.
"""

import casadi as ca
import numpy as np
import pytest

import turnpike as tp
from turnpike.analysis.learning import discrete_cost, sparsity_bounds, speed_limit_lower_bound, zero_threshold
from turnpike.errors import InputError

LAM, TOL, H = 0.3, 1e-10, 0.02


def scalar():
    x, u, y = ca.SX.sym("x"), ca.SX.sym("u"), ca.SX.sym("y")
    return tp.Problem(state=x, control=u, dynamics=u, running_cost=0.5 * (x - y) ** 2, data=y, data_values=[-2.0],
                      x0=[0.0], l1=LAM, l1_bound=1.0, name="scalar-l1")


def half_square(r):
    return 0.5 * r ** 2


def test_the_reference_cost_and_the_speed_limit_are_the_analytic_integrals():
    prob = scalar()
    steps = round(8.0 / H)
    bounds = sparsity_bounds(prob, -np.ones((round(2 / H), 1)), H, 8.0,
                             running_lower=speed_limit_lower_bound([2.0], 1.0, H, steps, loss=half_square))
    assert bounds.reference_cost == pytest.approx(4 / 3 + 0.6, rel=1e-12)
    assert bounds.running_lower == pytest.approx(4 / 3, rel=1e-12)
    assert bounds.reference_final_cost == pytest.approx(0.0, abs=1e-24)
    assert bounds.stopping_time == pytest.approx(2 + H, rel=1e-12)
    assert bounds.mass == pytest.approx(2.0, rel=1e-12)


@pytest.mark.parametrize("T", [4.0, 8.0, 16.0])
def test_the_scalar_optimum_meets_the_bounds_and_its_hypotheses(T):
    prob = scalar()
    sol = tp.solve(prob, T, steps=round(T / H), options={"ipopt.tol": TOL})
    assert sol.success
    assert discrete_cost(prob, sol.u, sol.h) == pytest.approx(sol.cost, abs=1e-7)  # the solver's objective
    lower = speed_limit_lower_bound([2.0], 1.0, H, sol.steps, loss=half_square)
    bounds = sparsity_bounds(prob, -np.ones((round(2 / H), 1)), H, T, running_lower=lower)
    check = bounds.check(prob, sol, zero_threshold(TOL, H, LAM))
    r = -(T - 2) / 2 + np.sqrt(((T - 2) / 2) ** 2 + LAM)
    assert abs(check["stopping_time"] - (2 - r)) <= H  # the measured T* is the exact one, to one layer
    assert check["cost_at_most_reference"] and check["saturated"] and check["no_gap"] and check["at_rest"]
    assert check["stopping_time_within"] and check["stopping_time"] <= 2 + H
    assert check["mass"] <= bounds.mass
    assert check["error_at_stop"] == pytest.approx(r ** 2 / 2, rel=0.05)  # E(x(T*)) = r²/2
    assert check["error_at_stop_within"] and check["error_at_stop"] <= bounds.reference_cost / (T - 2 - H)


def test_a_control_that_costs_more_than_the_reference_is_flagged():
    """The bounds hold for controls costing at most J_ref: a control that dawdles (u = -1/2 for 4 time units) is
    admissible, costs more, and check says so; its stopping time breaks the bound."""
    prob = scalar()
    T = 8.0
    steps = round(T / H)
    dawdle = np.zeros((steps, 1))
    dawdle[: round(4 / H)] = -0.5
    cost = discrete_cost(prob, dawdle, H)
    x = np.concatenate([[0.0], np.cumsum(dawdle[:, 0]) * H])
    sol = tp.Solution(success=True, status="constructed", cost=cost, cost_terms={}, stats={}, problem="scalar-l1",
                      T=T, steps=steps, t=np.linspace(0, T, steps + 1), x=x[:, None], u=dawdle,
                      adjoint=np.zeros((steps, 1)))
    bounds = sparsity_bounds(prob, -np.ones((round(2 / H), 1)), H, T,
                             running_lower=speed_limit_lower_bound([2.0], 1.0, H, steps, loss=half_square))
    check = bounds.check(prob, sol, 1e-9)
    assert not check["cost_at_most_reference"] and not check["saturated"]
    assert not check["stopping_time_within"]


def test_bad_arguments_are_named():
    prob = scalar()
    with pytest.raises(InputError, match="reference must satisfy"):
        sparsity_bounds(prob, -2 * np.ones((10, 1)), H, 8.0)
    with pytest.raises(InputError, match="must be a multiple of h"):
        sparsity_bounds(prob, -np.ones((10, 1)), H, 8.005)
    with pytest.raises(InputError, match="running_lower"):
        sparsity_bounds(prob, -np.ones((10, 1)), H, 8.0, running_lower=-1.0)
    x, u = ca.SX.sym("x"), ca.SX.sym("u")
    smooth = tp.Problem(state=x, control=u, dynamics=u, running_cost=x ** 2 + u ** 2, x0=[1.0])
    with pytest.raises(InputError, match="L1 price"):
        sparsity_bounds(smooth, np.zeros((10, 1)), H, 8.0)
    with pytest.raises(InputError, match="speed"):
        speed_limit_lower_bound([1.0], 0.0, H, 10)


@pytest.mark.slow
def test_the_outer_field_on_two_spheres_meets_the_bounds():
    """The instance of examples/neural_ode_sparse.py at T = 5 (about half a minute): (H2) is exhibited by sequential
    linear programming (a zero-error control within the L1 ball on 15 layers), L is the speed limit
    |d(P x_i)/dt| <= |u|_1 <= M; the measured T* and E(x(T*)) are within the bounds and (H1), (H3) hold."""
    from problems.datasets import concentric_spheres
    from problems.neural_ode import NeuralODEClassification
    from turnpike.analysis.learning import zero_error_control

    points, labels = concentric_spheres(8, 7, seed=0)
    lam, M, dt = 0.05, 4.0, 0.1
    prob = NeuralODEClassification(points, labels, field="outer", cost="sparse", weight=lam, l1_bound=M)
    P, y = ca.DM(prob.output), ca.DM(prob.labels)
    reference = zero_error_control(prob, np.zeros((15, prob.nu)), dt, lambda X: ca.mtimes(X.T, P) - y,
                                   l1_bound=M, max_iter=300)
    assert reference.success and np.abs(reference.u).sum(axis=1).max() <= M
    sol = tp.solve(prob, 5.0, dt=dt, formulation="multiple-shooting", presolve="none",  # as the example
                   options={"ipopt.tol": TOL, "ipopt.max_iter": 3000})
    assert sol.success
    residuals = prob.outputs(prob.x0_samples) - prob.labels
    bounds = sparsity_bounds(prob, reference.u, dt, 5.0,
                             running_lower=speed_limit_lower_bound(residuals, M, dt, sol.steps))
    check = bounds.check(prob, sol, zero_threshold(TOL, dt, lam))
    assert check["cost_at_most_reference"] and check["saturated"] and check["no_gap"] and check["at_rest"]
    assert check["stopping_time_within"] and check["mass"] <= bounds.mass
    assert check["error_at_stop"] <= check["error_at_stop_bound_measured"]
