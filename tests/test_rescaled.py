"""Rescaled controls under cost (A): T·u_T(T s) converges to a minimum-norm control reaching zero error.

Instance: the outer field dx_i/dt = w tanh(x_i) + b (linear in u), 3 points in R² (N = d + 1) at distance >= 0.5
from the boundary x_2 = 0, labels sign(x_2), output P = e_2, squared loss, λ = 1e-2, RK4 with 20 steps on every
horizon (one grid in s = t/T), IPOPT tol 1e-12, each horizon warm-started from the rescaled previous optimum.

What the theory says (docs/mathematics.md §1), for the discrete problem as for the ODE (an RK4 step of length
T/n with control u is the step of length 1/n with T u, f being linear in u):
* v_T = T u_T(T ·) minimises E(x^v(1)) + (λ/T)‖v‖² over v, so T·J_T = min_v (T E + λ‖v‖²) is nondecreasing in T
  and at most λ‖v_0‖² for any zero-error control v_0, and E(x_T(T)) <= J_T <= λ‖v_0‖²/T;
* v_T tends to a minimum-norm zero-error control. Where that limit is a nondegenerate constrained minimum, v_T =
  v_0 + (λ/T) w + O(T⁻²) (implicit function theorem on the optimality system), so successive distances halve when
  T doubles and ‖v_T - v_0‖ T is constant to O(1/T).
v_0 is computed independently of the optimiser: Gauss-Newton iterations to r = Pᵀx(1) - y = 0 that then shrink |v|
along the zero set (turnpike.analysis.learning.zero_error_control).
"""

import casadi as ca
import numpy as np
import pytest

import turnpike as tp
from problems.neural_ode import NeuralODEClassification
from turnpike.analysis.learning import discrete_cost, rescaled_distance, zero_error_control
from turnpike.errors import InputError

POINTS = np.array([[-0.5, 0.5], [0.4, 0.7], [0.1, -0.6]])
LAMBDA, STEPS = 1e-2, 20
HORIZONS = [1, 2, 4, 8, 16, 32, 64, 128]


def problem():
    return NeuralODEClassification(POINTS, np.sign(POINTS[:, 1]), field="outer", cost="erm", weight=LAMBDA)


def residual(prob):
    P, y = ca.DM(prob.output), ca.DM(prob.labels)
    return lambda X: ca.mtimes(X.T, P) - y


@pytest.fixture(scope="module")
def horizons():
    prob, sols, previous = problem(), [], None
    for T in HORIZONS:
        guess = None if previous is None else previous.u * previous.T / T
        sol = tp.solve(prob, float(T), STEPS, initial_guess=guess, options={"ipopt.tol": 1e-12})
        assert sol.success
        sols.append(sol)
        previous = sol
    limit = zero_error_control(prob, sols[-1].u, sols[-1].h, residual(prob))
    assert limit.success and limit.residual <= 1e-12
    return prob, sols, limit


def test_the_distance_between_successive_rescaled_controls_decreases(horizons):
    _, sols, _ = horizons
    gaps = [rescaled_distance(a, b) for a, b in zip(sols, sols[1:], strict=False)]
    assert all(b < a for a, b in zip(gaps, gaps[1:], strict=False))
    ratios = np.array(gaps[1:]) / np.array(gaps[:-1])
    np.testing.assert_allclose(ratios[2:], 0.5, atol=0.02)  # O(1/T): halves when T doubles


def test_the_rescaled_controls_tend_to_the_minimum_norm_zero_error_control(horizons):
    _, sols, limit = horizons
    scaled = np.array([sol.T * rescaled_distance(sol, limit) for sol in sols])
    assert scaled[-1] < 0.05 * np.linalg.norm(limit.u) * limit.T  # close to v_0 in relative terms
    np.testing.assert_allclose(scaled[3:], scaled[-1], rtol=0.05)  # ‖v_T - v_0‖ ~ c/T


def test_T_times_the_cost_increases_to_lambda_times_the_minimum_norm(horizons):
    prob, sols, limit = horizons
    C = LAMBDA * limit.rescaled_energy
    value = np.array([sol.T * sol.cost for sol in sols])
    assert np.all(np.diff(value) >= -1e-10) and np.all(value <= C * (1 + 1e-9))
    assert value[-1] == pytest.approx(C, rel=1e-3)
    errors = np.array([prob.training_error(sol.x[-1]) for sol in sols])
    assert np.all(errors <= C / np.array(HORIZONS))  # the theorem's E(x(T)) <= C/T


def test_the_limit_is_a_local_minimum_norm_zero_error_control(horizons):
    """Perturb v_0 at random (seeded, 1% of its size), return to the zero set with the least correction
    (minimum_norm=False): the norm never drops below |v_0|. And v_0 costs λ‖v_0‖²/T in the discrete problem
    (T, λ) of its grid: the terminal loss vanishes, checked through the transcription's quadrature."""
    prob, _, limit = horizons
    assert discrete_cost(prob, limit.u, limit.h) == pytest.approx(LAMBDA * limit.energy, rel=1e-9)
    rng = np.random.default_rng(5)
    size = np.linalg.norm(limit.u)
    for _ in range(3):
        kick = rng.standard_normal(limit.u.shape)
        back = zero_error_control(prob, limit.u + 0.01 * size * kick / np.linalg.norm(kick), limit.h,
                                  residual(prob), minimum_norm=False)
        assert back.success and back.energy >= limit.energy * (1 - 1e-9)


def test_the_discrete_cost_is_the_solvers_objective(horizons):
    prob, sols, _ = horizons
    for sol in sols[:3]:
        assert discrete_cost(prob, sol.u, sol.h, method=sol.stats["method"]) == pytest.approx(sol.cost, rel=1e-9)


def test_rescaled_distance_of_piecewise_constants_on_different_grids():
    """v_a = T_a u_a on 2 intervals of (0, 1), v_b on 3: the L² distance integrated by hand over (0, 1/3, 1/2,
    2/3, 1)."""
    from types import SimpleNamespace

    a = SimpleNamespace(T=2.0, u=np.array([[1.0], [3.0]]))  # v_a = 2, 6 on halves
    b = SimpleNamespace(T=1.0, u=np.array([[2.0], [5.0], [9.0]]))  # v_b = 2, 5, 9 on thirds
    exact = np.sqrt((0.0 ** 2) / 3 + (2 - 5) ** 2 / 6 + (6 - 5) ** 2 / 6 + (6 - 9) ** 2 / 3)
    assert rescaled_distance(a, b) == pytest.approx(exact, rel=1e-14)
    norm_b = np.sqrt((4 + 25 + 81) / 3)
    assert rescaled_distance(a, b, relative=True) == pytest.approx(exact / norm_b, rel=1e-14)
    with pytest.raises(InputError, match="same nu"):
        rescaled_distance(a, SimpleNamespace(T=1.0, u=np.ones((3, 2))))


def test_zero_error_control_refuses_bad_arguments():
    prob = problem()
    with pytest.raises(InputError, match="components"):
        zero_error_control(prob, np.zeros((4, prob.nu)), 0.1, residual(prob), components=[0, 0])
    with pytest.raises(InputError, match="residual must return a CasADi vector"):
        zero_error_control(prob, np.zeros((4, prob.nu)), 0.1, lambda X: 1.0)
    with pytest.raises(InputError, match=r"u must have shape \(steps, 6\)"):
        zero_error_control(prob, np.zeros((4, 2)), 0.1, residual(prob))
