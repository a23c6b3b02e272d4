"""The projection onto the L1 balls of the split controls, the descents on them (projected gradient, augmented
Lagrangian, Newton on a face), and the exact zeros of a solve."""

import itertools
import sys

import casadi as ca
import numpy as np
import pytest

import turnpike as tp
from turnpike import presolve, solvers
from turnpike.presolve import (
    augmented_lagrangian_descent,
    face_newton,
    project_l1_ball,
    projected_descent,
    projected_gradient,
)
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


def _convex_l1_problem(samples=3, cap=None):
    """``dx/dt = A x + B u`` from several starts, ``∫ |x - 1|² + λ|u|_1``, ``|u(t)|_1 <= M`` (and ``|u_j| <= cap``
    if given): a convex problem."""
    x, u = ca.SX.sym("x", 2), ca.SX.sym("u", 3)
    A = np.array([[0.0, 1.0], [-1.0, -0.2]])
    B = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, -0.5]])
    x0 = np.random.default_rng(2).normal(size=(samples, 2))
    box = {} if cap is None else {"control_lower": -cap * np.ones(3), "control_upper": cap * np.ones(3)}
    return tp.Problem(state=x, control=u, dynamics=ca.mtimes(A, x) + ca.mtimes(B, u), x0=x0,
                      running_cost=ca.sumsqr(x - 1), l1=0.3, l1_bound=1.5, name="convex-l1", **box)


def _ipopt_alone(problem, T, steps):
    """IPOPT from the random start, to 1e-10, with its bounds not relaxed (its bound_relax_factor, 1e-8 by default,
    buys it a cost lower by about that factor times the multipliers)."""
    alone = tp.solve(problem, T, steps, presolve="none", formulation="reduced",
                     options={"ipopt.tol": 1e-10, "ipopt.bound_relax_factor": 0.0})
    assert alone.success
    return alone


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
    alone = _ipopt_alone(problem, T, steps)
    assert J == pytest.approx(alone.cost, abs=1e-8)
    # u is not unique (a saturated stage may trade components of equal price), x is: |x - 1|² is strictly convex
    np.testing.assert_allclose(rs.simulate(result.u, T), alone.x, atol=1e-5)
    assert int(np.sum(V == 0)) > 0  # exact zeros, where IPOPT has small positive numbers


def test_the_augmented_lagrangian_ends_at_the_optimum_of_the_convex_problem():
    """L-BFGS-B on the augmented Lagrangian, then the projected gradient: a feasible first-order point with exact
    zeros, and on this convex problem IPOPT's optimum (J to 1e-8, the states to 1e-5)."""
    problem = _convex_l1_problem()
    T, steps = 4.0, 20
    rs = ReducedSpace(problem, steps, "rk4")
    start = 0.1 * np.random.default_rng(3).normal(size=(steps, problem.nu))
    result = augmented_lagrangian_descent(rs, start, T, gtol=1e-10)
    V = rs.control_variables(result.u)
    J, g = rs._value_and_gradient(V.reshape(-1), rs.parameters(T))
    assert projected_gradient(V, g.reshape(V.shape), problem.l1_bound, rs.control_bounds()[1]) <= 1e-10
    assert np.all(np.abs(result.u).sum(axis=1) <= problem.l1_bound + 1e-12)
    assert "augmented Lagrangian" in result.method and int(np.sum(V == 0)) > 0
    alone = _ipopt_alone(problem, T, steps)
    assert J == pytest.approx(alone.cost, abs=1e-8)
    np.testing.assert_allclose(rs.simulate(result.u, T), alone.x, atol=1e-5)


def test_the_augmented_lagrangian_ends_by_newton_on_the_face_with_either_hessian():
    """The phase ends by Newton on the face of a projected point, far below the first-order tolerance, at IPOPT's
    optimum, whether the Hessian on the face comes from the dense reduced Hessian or from Hessian-vector products
    (the same matrix up to round-off: the same states; u is not unique, a saturated stage may trade components of
    equal price, and round-off decides where along that set each ends)."""
    problem = _convex_l1_problem()
    T, steps = 4.0, 20
    start = 0.1 * np.random.default_rng(3).normal(size=(steps, problem.nu))
    alone = _ipopt_alone(problem, T, steps)
    ends = []
    for mode in ("dense", "hessian-vector"):
        rs = ReducedSpace(problem, steps, "rk4")
        rs.second_order = mode
        result = augmented_lagrangian_descent(rs, start, T, gtol=1e-6)
        V = rs.control_variables(result.u)
        J, g = rs._value_and_gradient(V.reshape(-1), rs.parameters(T))
        assert "Newton on the face" in result.message.split(",")[0]
        assert projected_gradient(V, g.reshape(V.shape), problem.l1_bound, rs.control_bounds()[1]) <= 1e-9
        assert J == pytest.approx(alone.cost, abs=1e-8)
        ends.append(rs.simulate(result.u, T))
    np.testing.assert_allclose(ends[0], ends[1], atol=1e-7)


def test_a_face_newton_that_fails_changes_nothing(monkeypatch):
    """An attempt whose end point fails the projected-gradient test is discarded: the descent's controls are
    exactly those of the same descent whose attempts compute nothing."""
    problem = _convex_l1_problem()
    T, steps = 4.0, 20
    start = 0.1 * np.random.default_rng(3).normal(size=(steps, problem.nu))
    real, attempts = presolve.face_newton, []

    def failing(rs, V, T, **options):
        V_n, J, g, hessians, message = real(rs, V, T, **options)
        attempts.append(hessians)
        return V_n, J, g + 1.0, hessians, message  # a gradient no point on the balls is stationary for

    def skipped(rs, V, T, **options):  # fails at once, computing nothing
        return V.copy(), np.inf, np.ones_like(V), 0, "skipped"

    monkeypatch.setattr(presolve, "face_newton", failing)
    with_attempts = augmented_lagrangian_descent(ReducedSpace(problem, steps, "rk4"), start, T, gtol=1e-8)
    monkeypatch.setattr(presolve, "face_newton", skipped)
    without = augmented_lagrangian_descent(ReducedSpace(problem, steps, "rk4"), start, T, gtol=1e-8)
    assert attempts and sum(attempts) > 0
    np.testing.assert_array_equal(with_attempts.u, without.u)
    assert with_attempts.iterations == without.iterations


def test_a_stop_during_newton_on_the_face_ends_the_descent(monkeypatch):
    """A time limit that falls due while Newton on the face runs ends the whole descent there (a feasible point,
    "stopped"), instead of starting another minimisation."""
    problem = _convex_l1_problem()
    T, steps = 4.0, 20
    start = 0.1 * np.random.default_rng(3).normal(size=(steps, problem.nu))
    real, due = presolve.face_newton, []

    def entered(rs, V, T, **options):
        due.append(True)  # from now on the limit is due, as a real one stays
        return real(rs, V, T, **options)

    monkeypatch.setattr(presolve, "face_newton", entered)
    result = augmented_lagrangian_descent(ReducedSpace(problem, steps, "rk4"), start, T, gtol=1e-12,
                                          stop=lambda: "time limit" if due else None)
    assert len(due) == 1 and result.message.startswith("stopped: time limit")
    assert np.all(np.abs(result.u).sum(axis=1) <= problem.l1_bound + 1e-12)


def test_newton_on_the_face_reaches_the_optimum_with_box_bounds():
    """Controls capped at |u_j| <= 0.6 as well: the descent ends by Newton on the face at IPOPT's optimum."""
    problem = _convex_l1_problem(cap=0.6)
    T, steps = 4.0, 20
    rs = ReducedSpace(problem, steps, "rk4")
    start = 0.1 * np.random.default_rng(3).normal(size=(steps, problem.nu))
    result = augmented_lagrangian_descent(rs, start, T, gtol=1e-6)
    alone = _ipopt_alone(problem, T, steps)
    assert np.any(np.isclose(np.abs(alone.u), 0.6, atol=1e-6))  # some controls sit at their caps
    V = rs.control_variables(result.u)
    J, g = rs._value_and_gradient(V.reshape(-1), rs.parameters(T))
    assert "Newton on the face" in result.message
    assert projected_gradient(V, g.reshape(V.shape), problem.l1_bound, rs.control_bounds()[1]) <= 1e-9
    assert J == pytest.approx(alone.cost, abs=1e-8)


@pytest.mark.parametrize("saturated", [False, True])
@pytest.mark.parametrize("size", [1e-3, 1e-8, 1e-13])
def test_newton_on_the_face_sets_to_zero_a_small_control_that_should_be(size, saturated):
    """From IPOPT's optimum with one of its zeros moved to a small nonzero value (in a stage whose ball is
    saturated, the stage's other controls scaled back onto it, or not): the step that takes it back to 0 is
    blocked at once, and J cannot see it below its round-off; Newton must still reach the optimal face."""
    problem = _convex_l1_problem()
    T, steps = 4.0, 20
    rs = ReducedSpace(problem, steps, "rk4")
    alone = _ipopt_alone(problem, T, steps)
    u = np.where(np.abs(alone.u) < 1e-7, 0.0, alone.u)
    full = np.abs(u).sum(axis=1) > problem.l1_bound - 1e-6
    k, j = np.argwhere((u == 0) & (full == saturated)[:, None])[0]
    u[k, j] = size
    if saturated:
        u[k] *= problem.l1_bound / np.abs(u[k]).sum()
    V, J, g, hessians, message = face_newton(rs, rs.control_variables(u), T)
    assert projected_gradient(V, g, problem.l1_bound, rs.control_bounds()[1]) <= 1e-9, message
    assert J == pytest.approx(alone.cost, abs=1e-8)


def test_newton_on_the_optimal_face_converges_in_a_few_steps_to_the_optimum():
    """From IPOPT's optimum of the convex problem moved along its own face (the free controls perturbed, the
    saturated stages scaled back onto |u_k|_1 = M), Newton on the face returns to the optimum: projected gradient
    below 1e-10 after at most 5 Hessians (quadratic convergence), J and the states of IPOPT's optimum."""
    problem = _convex_l1_problem()
    T, steps = 4.0, 20
    rs = ReducedSpace(problem, steps, "rk4")
    alone = _ipopt_alone(problem, T, steps)
    u = np.where(np.abs(alone.u) < 1e-7, 0.0, alone.u)  # IPOPT's zeros are of its tolerance's size
    saturated = np.abs(u).sum(axis=1) > problem.l1_bound - 1e-6
    assert saturated.any() and (u == 0).any() and (u != 0).any()  # the test needs all three kinds of face
    moved = u * (1 + 0.05 * np.random.default_rng(4).uniform(-1, 1, size=u.shape))
    moved[saturated] *= problem.l1_bound / np.abs(moved[saturated]).sum(axis=1, keepdims=True)
    V, J, g, hessians, message = face_newton(rs, rs.control_variables(moved), T)
    assert message.startswith("‖P∇J‖∞") and hessians <= 5
    assert projected_gradient(V, g, problem.l1_bound, rs.control_bounds()[1]) <= 1e-10
    assert J == pytest.approx(alone.cost, abs=1e-8)
    np.testing.assert_allclose(rs.simulate(rs.stage_controls(V), T), alone.x, atol=1e-6)
    np.testing.assert_array_equal(rs.stage_controls(V) == 0, u == 0)


def test_a_solve_after_the_presolve_returns_exact_zeros_at_the_optimum():
    """IPOPT solves on the face the presolve ended on (its zeros fixed), confirmed by the projected gradient of the
    problem as posed on the fixed components: exact zeros, the optimum of IPOPT alone (J to 1e-8), and no L1
    component at IPOPT's size left."""
    problem = _convex_l1_problem()
    T, steps = 4.0, 20
    sol = tp.solve(problem, T, steps, options={"ipopt.tol": 1e-10, "ipopt.bound_relax_factor": 0.0})
    zeros = sol.stats["zeros"]
    assert sol.success and zeros["exact"] and zeros["candidates"] == "the presolve's exact zeros"
    assert zeros["zeros"] == int(np.sum(sol.u == 0)) > 0
    assert np.all((sol.u == 0) | (np.abs(sol.u) > 1e-6))
    assert zeros["fixed_projected_gradient"] <= 1e-10 and zeros["iterations"] == sol.stats["iterations"]
    assert sol.cost == pytest.approx(_ipopt_alone(problem, T, steps).cost, abs=1e-8)
    np.testing.assert_allclose(ReducedSpace(problem, steps, "rk4").simulate(sol.u, T), sol.x, atol=1e-9)


def test_exact_zeros_after_the_stopping_time_of_the_scalar_case():
    """dx/dt = u, L = ½(x - y)², λ|u|, |u| <= 1, x(0) - y = 2 (docs/mathematics.md §1): u = -1 until T* = 2 - r,
    r² + (T - 2) r - λ = 0, then 0. No presolve runs (one sample): the candidates are the components below
    zero_threshold at the solver's tolerance. After the re-solve every control after T* is exactly 0, and
    stopping_time needs no threshold to find T* within one interval."""
    lam, T, steps = 0.3, 8.0, 160
    x, u, y = ca.SX.sym("x"), ca.SX.sym("u"), ca.SX.sym("y")
    prob = tp.Problem(state=x, control=u, dynamics=u, running_cost=0.5 * (x - y) ** 2, data=y,
                      data_values=[-2.0], x0=[0.0], l1=lam, l1_bound=1.0)
    sol = tp.solve(prob, T=T, steps=steps, options={"ipopt.tol": 1e-10})
    assert sol.success and sol.stats["zeros"]["exact"]
    r = -(T - 2) / 2 + np.sqrt(((T - 2) / 2) ** 2 + lam)
    t_star = tp.analysis.stopping_time(sol)
    assert abs(t_star - (2 - r)) <= sol.h
    after = sol.t[:-1] >= t_star
    assert after.sum() > 100 and np.all(sol.u[after] == 0.0)
    before = sol.t[1:] <= t_star - sol.h  # saturated, |u| = M, up to the interval containing T*
    np.testing.assert_allclose(sol.u[before, 0], -1.0, atol=1e-8)
    assert tp.analysis.stopping_time(sol, threshold=0.0) == t_star


def _first_solution(T=4.0, steps=20):
    """The convex L1 problem solved by IPOPT alone on the reduced NLP: ``(exact_zeros, built, nlp, first, T)``."""
    solve_module = sys.modules["turnpike.solve"]
    problem = _convex_l1_problem()
    opts = solvers.solver_options("ipopt", {"ipopt.tol": 1e-10})
    built, _ = solve_module._built(problem, steps, "rk4", "ipopt", opts, "reduced", "dense", "auto")
    nlp = built.nlp
    w0 = nlp.pack(None, 0.1 * np.random.default_rng(3).normal(size=(steps, problem.nu)))
    first = solvers.run(built, w0=w0, p=nlp.parameters(T), bounds=nlp.bounds())
    return solve_module.exact_zeros, built, nlp, first, T


def test_zeros_that_should_be_active_are_refused():
    """A candidate that is active at the optimum (here: every component of the first interval) fixed at 0 leaves a
    negative reduced gradient, which the projected gradient of the problem as posed sees: the solver's first
    solution is kept, and the report says why."""
    exact_zeros, built, nlp, first, T = _first_solution()
    assert first.success and np.abs(nlp.controls(first.w)[0]).max() > 0.1
    candidates = np.zeros(nlp.controls(first.w).shape, dtype=bool)
    candidates[0] = True
    kept, report = exact_zeros(built, nlp, first, T, candidates)
    assert kept is first and not report["exact"]
    assert "rose" in report["rule"] and report["projected_gradient"] == report["solver_projected_gradient"]


def test_a_face_that_holds_an_active_control_at_zero_is_refused():
    """The solve on a face that fixes at 0 controls which are active at the optimum (every component of the first
    interval) converges on that face, but the fixed components' projected gradient in the problem as posed is
    positive there: the face is refused with the reason, and on the true face (the optimum's zeros) it is accepted
    with the optimum's cost."""
    exact_zeros, built, nlp, first, T = _first_solution()
    solve_on_face = sys.modules["turnpike.solve"].solve_on_face
    u = nlp.controls(first.w)
    assert first.success and np.abs(u[0]).max() > 0.1
    wrong = np.zeros(u.shape, dtype=bool)
    wrong[0] = True
    res, report = solve_on_face(built, nlp, first.w, T, wrong, 1e-10)
    assert res.success and not report["exact"] and report["rule"].startswith("refused")
    assert report["fixed_projected_gradient"] > 1e-3 and np.all(nlp.controls(res.w)[0] == 0)
    right = np.abs(u) <= 1e-7
    res, report = solve_on_face(built, nlp, first.w, T, right, 1e-10)
    assert report["exact"] and report["fixed_projected_gradient"] <= 1e-10
    # J to 1e-8 relative: IPOPT relaxes the free components' bounds by 1e-8 (its bound_relax_factor) in both solves
    assert res.cost == pytest.approx(first.cost, rel=1e-8) and report["zeros"] == int(right.sum())


def test_the_second_solve_for_exact_zeros_obeys_the_solves_stop():
    """The re-solve with the zeros fixed runs under the solve's Stop (time limit, signals): when it is due before, no
    second solve; when it comes during it, IPOPT stops at the next iterate. Either way the first (converged)
    solution is kept and the report says why."""
    from turnpike.stopping import Stop

    exact_zeros, built, nlp, first, T = _first_solution()
    candidates = np.abs(nlp.controls(first.w)) <= 1e-6
    assert first.success and candidates.any() and np.any(nlp.controls(first.w)[candidates] != 0)

    kept, report = exact_zeros(built, nlp, first, T, candidates, Stop(1e-9, start=0.0))
    assert kept is first and not report["exact"] and report["iterations"] == 0
    assert report["rule"] == "the solver's controls: no second solve (time limit of 1e-09 s)"

    class AfterOneLook(Stop):
        looks = 0

        def __call__(self):
            self.looks += 1
            if self.looks > 1:
                self.request("stopped by the test")
            return self.reason

    stop = AfterOneLook()
    kept, report = exact_zeros(built, nlp, first, T, candidates, stop)
    assert kept is first and not report["exact"] and report["iterations"] <= 1
    assert report["rule"].endswith("ended stopped: stopped by the test")
    kept, report = exact_zeros(built, nlp, first, T, candidates, Stop())  # no limit: as before
    assert report["exact"] and np.all(nlp.controls(kept.w)[candidates] == 0)


def test_ipopt_gets_the_options_of_a_start_on_faces_only_where_it_starts_on_faces():
    """After the projected descent, or from a guess with exact zeros (such a descent's end point): μ = 1e-9 and
    small pushes; from any other guess (a multiple-shooting warm start, which runs no descent) IPOPT's own. Multiple
    shooting does not relax the bounds of the split (its parts enter linearly there)."""
    from turnpike.solve import EXACT_SPLIT_OPTIONS, WARM_FACE_OPTIONS, _l1_options, _starts_on_faces

    problem = _convex_l1_problem()
    smooth = np.full((20, problem.nu), 0.3)
    on_faces = smooth.copy()
    on_faces[5:] = 0.0
    cases = [("auto", True, None, True), ("none", True, None, False), ("lbfgs", False, smooth, True),
             ("auto", False, smooth, False), ("auto", False, on_faces, True), ("none", False, on_faces, True)]
    for choice, cold, guess, expected in cases:
        assert _starts_on_faces(problem, choice, cold, guess) == expected, (choice, cold)
        opts = _l1_options({}, problem, "ipopt", "reduced", expected, None)
        assert (opts == WARM_FACE_OPTIONS) == expected
        opts = _l1_options({}, problem, "ipopt", "multiple-shooting", expected, None)
        assert opts == {**EXACT_SPLIT_OPTIONS, **(WARM_FACE_OPTIONS if expected else {})}
    assert _l1_options({}, problem, "ipopt", "reduced", True, {"ipopt.mu_init": 1e-3}) == {}  # the user's choice
    assert _l1_options({}, problem, "ipopt", "multiple-shooting", False, {"ipopt": {"bound_relax_factor": 1e-3}}) == {}
    assert _l1_options({}, problem, "fatrop", "multiple-shooting", True, None) == {}


def test_multiple_shooting_keeps_the_split_inside_the_l1_balls():
    """The split parts are not relaxed below 0, so |u⁺ - u⁻|_1 <= M holds to rounding at the optimum (with IPOPT's
    default relaxation it exceeded M by about 2e-8 per component), and the optimum is the reduced formulation's."""
    problem = _convex_l1_problem()
    ms = tp.solve(problem, 2.0, steps=20, formulation="multiple-shooting", options={"ipopt.tol": 1e-10})
    reduced = tp.solve(problem, 2.0, steps=20, formulation="reduced", options={"ipopt.tol": 1e-10})
    assert ms.success and reduced.success
    assert np.abs(ms.u).sum(axis=1).max() <= problem.l1_bound * (1 + 1e-12)
    assert ms.cost == pytest.approx(reduced.cost, rel=1e-8)


def test_fatrop_reads_the_tied_split_stage_by_stage():
    """Per stage the constraints are the gaps, the ties u - u⁺ + u⁻ = 0 and the L1 row, in FATROP's order (gaps,
    then path constraints): its structure detection accepts them and it reaches IPOPT's optimum."""
    problem = _convex_l1_problem()
    fatrop = tp.solve(problem, 2.0, steps=20, formulation="multiple-shooting", solver="fatrop",
                      options={"fatrop.tol": 1e-9})
    ipopt = tp.solve(problem, 2.0, steps=20, formulation="multiple-shooting", options={"ipopt.tol": 1e-10})
    assert fatrop.success and ipopt.success
    assert fatrop.cost == pytest.approx(ipopt.cost, rel=1e-7)
    np.testing.assert_allclose(fatrop.u, ipopt.u, atol=1e-5)


@pytest.mark.parametrize("split", [True, False])
def test_bounds_with_zeros_fix_exactly_the_marked_controls(split):
    """bounds(zero=...) of both transcriptions: the marked controls' variables at 0 (u⁺ and u⁻, and u itself in
    multiple shooting), nothing else; in multiple shooting the ties of the marked controls dropped (±∞)."""
    from problems import Pendulum
    from turnpike.reduced import ReducedSpace
    from turnpike.transcription import MultipleShooting

    def newly_fixed(nlp):
        before, after = nlp.bounds(), nlp.bounds(zero)
        return (after["lbx"] == 0) & (after["ubx"] == 0) & (before["lbx"] != before["ubx"])

    problem = _convex_l1_problem(cap=0.6) if split else Pendulum()
    steps, nu = 4, problem.nu
    zero = np.zeros((steps, nu), dtype=bool)
    zero[1, 0] = zero[3, nu - 1] = True
    marked = list(zip(*np.nonzero(zero), strict=True))

    n_v = 2 * nu if split else nu  # reduced: V_k = (u⁺_k, u⁻_k) with the split, else u_k; stage-major
    expected = np.zeros(steps * n_v, dtype=bool)
    for k, j in marked:
        expected[[k * n_v + j] + ([k * n_v + nu + j] if split else [])] = True
    np.testing.assert_array_equal(newly_fixed(ReducedSpace(problem, steps)), expected)

    ms = MultipleShooting(problem, steps)
    n_state, n_stage = problem.nx * problem.n_samples, ms.layout.n_stage
    expected = np.zeros(ms.layout.n_w, dtype=bool)
    for k, j in marked:
        first = k * n_stage + n_state  # u_k, then u⁺_k and u⁻_k with the split
        expected[[first + j] + ([first + nu + j, first + 2 * nu + j] if split else [])] = True
    np.testing.assert_array_equal(newly_fixed(ms), expected)
    dropped = np.isinf(ms.bounds(zero)["lbg"]) & np.isinf(ms.bounds(zero)["ubg"])
    ties = np.zeros((steps, ms.n_g_stage), dtype=bool)
    if split:
        ties[:, n_state : n_state + nu] = zero
    np.testing.assert_array_equal(dropped, ties.reshape(-1))
