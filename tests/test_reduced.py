"""The reduced formulation (turnpike.reduced) reaches the optimum of the plain multiple-shooting path.

Its derivatives are checked against CasADi's AD in test_derivatives.py; here whole solves are.
"""

import casadi as ca
import numpy as np
import pytest

import turnpike as tp
from problems.datasets import concentric_spheres
from problems.neural_ode import NeuralODEClassification
from turnpike.compiled import LANES, _reverse_mode, ensemble_gradient
from turnpike.presolve import minibatch_descent, newton_refinement, reduced_space_descent, unconstrained
from turnpike.reduced import ReducedSpace, recursion_stage
from turnpike.transcription import MultipleShooting, stage_function


def linear_ensemble(n_samples=6, **weights):
    """Convex: dx/dt = A x + B u for every sample, tracking per-sample targets y_i (one optimum)."""
    x, u, y = ca.SX.sym("x", 2), ca.SX.sym("u", 2), ca.SX.sym("y", 2)
    rng = np.random.default_rng(0)
    A = np.array([[0.0, 1.0], [-1.0, -0.2]])
    return tp.Problem(
        state=x, control=u, data=y, data_values=rng.standard_normal((n_samples, 2)),
        x0=rng.standard_normal((n_samples, 2)), dynamics=A @ x + u, l2=0.1,
        running_cost=ca.sumsqr(x - y), terminal_cost=ca.sumsqr(x - y), **weights,
    )


def two_circles(cost="turnpike", **kw):
    points, labels = concentric_spheres(8, 2, radii=(1.0, 2.0), seed=0)
    return NeuralODEClassification(points, labels, cost=cost, **kw)


def assert_same_optimum(a, b, atol=1e-6, odd=False):
    """Same cost, states, adjoint and controls; with ``odd``, controls up to the sign flip
    u -> -u that leaves the field w tanh(A x + b) unchanged (tanh is odd), so optima come in pairs."""
    assert a.success and b.success, (a.status, b.status)
    np.testing.assert_allclose(a.cost, b.cost, rtol=1e-8)
    sign = np.sign(np.vdot(a.u, b.u)) if odd else 1.0
    np.testing.assert_allclose(a.u, sign * b.u, atol=atol)
    np.testing.assert_allclose(a.x, b.x, atol=atol)
    np.testing.assert_allclose(a.adjoint, b.adjoint, atol=atol)
    for key in a.cost_terms:
        np.testing.assert_allclose(a.cost_terms[key], b.cost_terms[key], rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("weights", [{}, {"l1": 0.05}, {"l1": 0.05, "l1_bound": 0.8}])
def test_convex_ensemble_same_optimum_as_multiple_shooting(weights):
    prob = linear_ensemble(**weights)
    opts = {"ipopt.tol": 1e-10}
    ms = tp.solve(prob, T=3.0, steps=30, formulation="multiple-shooting", options=opts, presolve="none")
    red = tp.solve(prob, T=3.0, steps=30, formulation="reduced", options=opts, presolve="none")
    assert (ms.stats["formulation"], red.stats["formulation"]) == ("multiple-shooting", "reduced")
    assert_same_optimum(ms, red)
    if "l1_bound" in weights:  # the bound is active somewhere, and respected
        assert np.abs(red.u).sum(axis=1).max() == pytest.approx(0.8, abs=1e-6)


@pytest.mark.parametrize("cost, kw", [("turnpike", {}), ("erm", {"loss": "logistic"})])
def test_neural_ode_each_formulation_certifies_the_others_optimum(cost, kw):
    """Non-convex: from the reduced optimum, multiple shooting (states as variables, dynamics as
    constraints) stops at the same point, and back; the states agree, so the simulation is right.
    (With the L1 split an interior point moves a warm start off the bounds u± = 0 and may settle in
    a neighbouring optimum: the L1 and L1-bound cases are compared on the convex ensemble above.)"""
    prob = two_circles(cost, **kw)
    opts = {"ipopt.tol": 1e-10}
    red = tp.solve(prob, T=2.0, steps=20, formulation="reduced", options=opts)
    assert red.success
    ms = tp.solve(prob, T=2.0, steps=20, formulation="multiple-shooting", options=opts, initial_guess=red)
    assert_same_optimum(red, ms, odd=True)
    back = tp.solve(prob, T=2.0, steps=20, formulation="reduced", options=opts, initial_guess=ms)
    assert_same_optimum(ms, back, odd=True)
    assert back.stats["iterations"] <= 3


def test_formulation_is_chosen_by_the_problem_and_reported():
    x, u = ca.SX.sym("x"), ca.SX.sym("u")
    ensemble, single = linear_ensemble(), tp.Problem(state=x, control=u, dynamics=u, x0=[1.0], l2=1.0)
    stats = tp.solve(ensemble, T=1.0, steps=5).stats
    assert stats["formulation"] == "reduced"
    assert stats["gradient"] == "numpy adjoint recursion" or stats["gradient"].startswith(
        f"compiled adjoint, stage reverse mode ({LANES} lanes, ")
    assert stats["compiled"] == stats["gradient"].startswith("compiled")
    assert tp.solve(ensemble, T=1.0, steps=5, solver="fatrop").stats["formulation"] == "multiple-shooting"
    assert tp.solve(single, T=1.0, steps=5).stats["formulation"] == "multiple-shooting"
    # Fewer samples (3) than control variables per stage (u⁺, u⁻: 4): multiple shooting.
    few = linear_ensemble(n_samples=3, l1=0.05)
    assert tp.solve(few, T=1.0, steps=5).stats["formulation"] == "multiple-shooting"
    assert tp.solve(linear_ensemble(n_samples=4, l1=0.05), T=1.0, steps=5).stats["formulation"] == "reduced"
    with pytest.raises(tp.InputError, match="formulation='reduced' is solved with IPOPT only"):
        tp.solve(ensemble, T=1.0, steps=5, formulation="reduced", solver="fatrop")
    with pytest.raises(tp.InputError, match="formulation"):
        tp.solve(ensemble, T=1.0, steps=5, formulation="single")


@pytest.mark.parametrize("make", [two_circles, lambda: two_circles("erm"),
                                  lambda: linear_ensemble(n_samples=13, l1=0.05)])
def test_compiled_and_interpreted_derivatives_agree(monkeypatch, make):
    """Both compiled ensemble gradient loops (the stage's tanh and exp values kept for the backward pass; CasADi's
    reverse mode of the stage) and the compiled stage derivatives give the numbers of the interpreted
    path (CasADi's VM, Jacobians and the adjoint recursion in numpy). The samples go LANES = 8 at a
    time: 13 samples fill the second block with 3 copies of the last, which must not count."""
    prob = make()
    compiled = ReducedSpace(prob, 6, "rk4")
    if not compiled.compiled:
        pytest.skip("no C compiler: only the interpreted path exists")
    monkeypatch.setenv("TURNPIKE_COMPILE", "0")
    interpreted = ReducedSpace(prob, 6, "rk4")
    assert not interpreted.compiled
    u = 0.3 * np.random.default_rng(1).standard_normal((6, prob.nu))
    p = compiled.parameters(2.0)
    J_ref, g_ref = interpreted.ensemble_cost(u, p)
    w = interpreted.pack(None, u).reshape(6, -1)  # the NLP variables (u⁺, u⁻ with the L1 split)
    H_ref = interpreted.hessian(w, p)  # its stage derivatives are built on first use: not compiled
    monkeypatch.setenv("TURNPIKE_COMPILE", "1")
    stage, terminal, _ = recursion_stage(prob, stage_function(prob, "rk4"))
    loops = [ensemble_gradient(stage, terminal, keep) for keep in (True, False)]
    x0, y, h = prob.x0_samples, p[1:].reshape(prob.n_samples, prob.ny), p[0]
    assert all(compiled.samples.lanes(name) is not None for name in ("first", "second"))  # the Hessian's stages
    for threads in ("1", "3", "100"):  # the samples split over threads (100: more threads than samples)
        monkeypatch.setenv("TURNPIKE_THREADS", threads)
        for J, g in [compiled.ensemble_cost(u, p), *(loop(x0, u, y, h) for loop in loops)]:
            assert J == pytest.approx(J_ref, rel=1e-13)
            np.testing.assert_allclose(g, g_ref, rtol=1e-12, atol=1e-14)
        compiled._cache_key = None  # recompute the stage derivatives on these threads
        np.testing.assert_allclose(compiled.hessian(w, p), H_ref, rtol=1e-12, atol=1e-13)


def test_the_backward_pass_from_kept_values_is_casadis_reverse_mode():
    """The gradient loop's stage functions with the tanh and exp values passed from the forward to the backward
    pass give CasADi's reverse mode of the stage, on a stage where they feed each other (tanh of an exp, an exp
    used twice) and mix with operations differentiated as usual (sin, log1p, a product, a power)."""
    x, u, y, h = ca.SX.sym("x", 2), ca.SX.sym("u", 3), ca.SX.sym("y"), ca.SX.sym("h")
    e = ca.exp(u[0] * x[0])
    t = ca.tanh(e * x[1] + u[1])
    x_next = ca.vertcat(x[0] + h * t * ca.sin(x[1]), x[1] + h * ca.log1p(e) * ca.tanh(u[2] * t) ** 2)
    step = ca.Function("step", [x, u, y, h], [x_next, (x_next[0] - y) ** 2 + e])
    forward, backward = _reverse_mode(step)
    assert forward.nnz_out(2) == 3  # exp, tanh, tanh
    assert not {ca.OP_TANH, ca.OP_EXP} & {backward.instruction_id(k) for k in range(backward.n_instructions())}
    p = ca.SX.sym("p", 2)
    ell = step(x, u, y, h)[1] + ca.dot(p, step(x, u, y, h)[0])
    reference = ca.Function("vjp", [x, u, y, h, p], [ca.gradient(ell, x), ca.gradient(ell, u)])
    rng = np.random.default_rng(3)
    for _ in range(5):
        xv, uv, yv, pv = rng.standard_normal(2), rng.standard_normal(3), rng.standard_normal(), rng.standard_normal(2)
        x_next_value, q_value, r = forward(xv, uv, yv, 0.3)
        np.testing.assert_allclose(np.vstack(step(xv, uv, yv, 0.3)), np.vstack((x_next_value, q_value)), rtol=1e-15)
        for got, want in zip(backward(xv, uv, yv, 0.3, pv, r), reference(xv, uv, yv, 0.3, pv), strict=True):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-13, atol=1e-15)


def test_newton_on_a_quadratic_takes_one_step():
    """Linear dynamics and quadratic costs make the reduced J(u) quadratic: one Newton step from any
    start lands on the minimiser, which IPOPT alone (no presolve) finds too."""
    prob = linear_ensemble()
    rs = ReducedSpace(prob, 30, "rk4")
    res = newton_refinement(rs, np.random.default_rng(0).standard_normal((30, prob.nu)), 3.0)
    assert res.converged and res.iterations == 1 and res.regularised == 0 and res.positive_definite
    # Asked for more than round-off allows, it stops by itself within a few steps, at the same point.
    stuck = newton_refinement(rs, res.u, 3.0, gtol=0.0)
    assert not stuck.converged and stuck.iterations < 5 and "round-off" in stuck.message
    np.testing.assert_allclose(stuck.u, res.u, atol=1e-12)
    ref = tp.solve(prob, T=3.0, steps=30, presolve="none", options={"ipopt.tol": 1e-12})
    assert ref.success and ref.stats["formulation"] == "reduced"
    assert res.cost == pytest.approx(ref.cost, rel=1e-12)
    np.testing.assert_allclose(res.u, ref.u, atol=1e-8)


def test_newton_from_a_random_start_reaches_a_minimum_that_ipopt_certifies():
    """Non-convex (two circles): from a random start the Hessian is indefinite, so some steps are
    regularised; J still decreases to a point whose Hessian is positive definite (eigenvalues,
    computed apart from the Cholesky factorisations) and where IPOPT stops at its first KKT check."""
    prob, T, steps = two_circles(), 2.0, 20
    rs = ReducedSpace(prob, steps, "rk4")
    u0 = 0.5 * np.random.default_rng(2).standard_normal((steps, prob.nu))
    J0 = rs.reduced_objective()(u0.T, rs.parameters(T))[0]
    res = newton_refinement(rs, u0, T)
    assert res.converged and res.regularised > 0 and res.cost < J0
    H = rs.hessian(res.u, rs.parameters(T))
    assert np.linalg.eigvalsh(np.triu(H) + np.triu(H, 1).T)[0] > 0
    sol = tp.solve(prob, T=T, steps=steps, initial_guess=res.u, presolve="none")
    assert sol.success and sol.stats["iterations"] == 0
    assert sol.cost == pytest.approx(res.cost, rel=1e-12)


def test_descent_callback_sees_every_iterate_with_its_cost():
    prob, T, steps = two_circles(), 2.0, 20
    rs = ReducedSpace(prob, steps, "rk4")
    fg, p = rs.reduced_objective(), rs.parameters(T)
    seen = []
    res = reduced_space_descent(rs, 0.1 * np.random.default_rng(0).standard_normal((steps, prob.nu)), T,
                                callback=lambda intermediate_result: seen.append((intermediate_result.x.copy(),
                                                                                  intermediate_result.fun)))
    assert len(seen) == res.iterations > 10
    for x, J in seen[:: max(1, len(seen) // 5)]:  # the cost reported is J at the iterate reported
        assert J == pytest.approx(float(fg(x.reshape(steps, -1).T, p)[0]), rel=1e-14)
    costs = [J for _, J in seen]
    assert all(b <= a for a, b in zip(costs, costs[1:], strict=False)) and costs[-1] == res.cost


def test_descent_stops_at_its_first_step_that_decreases_j_by_less_than_rel_decrease():
    """The documented rule (scipy's ``ftol``): every step but the last decreases J by more than ``rel_decrease``
    relative to max(|J|, 1), the last by less; without it (0) the descent goes on further."""
    prob, T, steps = two_circles(), 2.0, 20
    rs = ReducedSpace(prob, steps, "rk4")
    u0 = 0.1 * np.random.default_rng(0).standard_normal((steps, prob.nu))
    costs = []
    res = reduced_space_descent(rs, u0, T, rel_decrease=1e-6,
                                callback=lambda intermediate_result: costs.append(intermediate_result.fun))
    J = [float(rs.reduced_objective()(u0.T, rs.parameters(T))[0]), *costs]
    decrease = [(a - b) / max(abs(a), abs(b), 1.0) for a, b in zip(J, J[1:], strict=False)]
    assert "RELATIVE REDUCTION" in res.message and decrease[-1] <= 1e-6 and min(decrease[:-1]) > 1e-6
    assert reduced_space_descent(rs, u0, T, rel_decrease=0.0).iterations > res.iterations


def test_descent_stops_once_a_window_of_iterations_decreases_j_by_less_than_window_decrease():
    """The hand-over rule of the Hessian-vector mode: the descent ends at the first iterate k >= w whose last w
    iterations decreased J by at most ``window_decrease |J_k|``, recomputed here from the costs the callback saw;
    without it, the same descent goes on."""
    prob, T, steps = two_circles(), 2.0, 20
    rs = ReducedSpace(prob, steps, "rk4")
    u0 = 0.1 * np.random.default_rng(0).standard_normal((steps, prob.nu))
    costs, w, rel = [], 20, 1e-4
    res = reduced_space_descent(rs, u0, T, rel_decrease=0.0, window=w, window_decrease=rel,
                                callback=lambda intermediate_result: costs.append(intermediate_result.fun))
    settled = [k for k in range(w, len(costs)) if costs[k - w] - costs[k] <= rel * abs(costs[k])]
    assert res.message == f"relative decrease over {w} iterations <= {rel:g}"
    assert settled and settled[0] == len(costs) - 1 == res.iterations - 1 and res.cost == costs[-1]
    assert reduced_space_descent(rs, u0, T, rel_decrease=0.0).iterations > res.iterations


def test_chord_steps_reach_the_minimum_of_plain_newton_with_fewer_hessians():
    """Reusing a positive definite Hessian's factorisation changes the path, not the limit: from the
    same start near a strict minimum (two circles, after L-BFGS), Newton with chord steps (some steps
    taken with an earlier factorisation) ends on the minimiser plain Newton (``chord_steps=0``) finds,
    having factorised fewer Hessians."""
    prob, T, steps = two_circles(), 2.0, 20
    rs = ReducedSpace(prob, steps, "rk4")
    start = reduced_space_descent(rs, 0.1 * np.random.default_rng(0).standard_normal((steps, prob.nu)), T).u
    plain = newton_refinement(rs, start, T, chord_steps=0)
    chord = newton_refinement(rs, start, T)
    assert plain.converged and plain.positive_definite and plain.hessians == plain.iterations
    assert chord.converged and chord.hessians < plain.hessians and chord.hessians < chord.iterations
    np.testing.assert_allclose(chord.u, plain.u, atol=1e-6)  # a flat minimum: ‖∇J‖∞ <= 1e-10 leaves ~1e-8
    assert chord.cost == pytest.approx(plain.cost, rel=1e-13)


def test_newton_leaves_a_saddle_that_its_gradient_steps_cannot():
    """dx/dt = u from (1, 0), J = 0.1 ∫|u|² + x1² - x2² + x2⁴ at T = 1. The control ``u2 ≡ 0`` is an
    invariant set: ∂J/∂u2 = 0 on it, so regularised Newton steps from u = 0 stay there and crawl to
    the saddle ``x(T) = (1/11, 0)``. The minimum is off that set: constant u with x(T) = (1/11, ±√0.45)
    (minimise ``0.1 |s - x0|² + s1² - s2² + s2⁴`` over s = x(T)), J = 0.1 (10/11)² + (1/11)² - 0.45² ≈ -0.1116."""
    x, u = ca.SX.sym("x", 2), ca.SX.sym("u", 2)
    prob = tp.Problem(state=x, control=u, x0=[1.0, 0.0], dynamics=u, l2=0.1,
                      terminal_cost=x[0] ** 2 - x[1] ** 2 + x[1] ** 4)
    rs = ReducedSpace(prob, 5, "rk4")
    assert np.all(rs.reduced_objective()(np.zeros((2, 5)), rs.parameters(1.0))[1][1] == 0)  # ∂J/∂u2 = 0
    res = newton_refinement(rs, np.zeros((5, 2)), 1.0)
    assert res.converged and res.positive_definite and res.negative_curvature >= 1
    np.testing.assert_allclose(np.abs(res.u), np.tile([10 / 11, np.sqrt(0.45)], (5, 1)), rtol=1e-9)
    assert res.cost == pytest.approx(0.1 * (10 / 11) ** 2 + (1 / 11) ** 2 - 0.45**2, rel=1e-12)


def test_newton_phase_runs_only_without_constraints():
    sol = tp.solve(two_circles(), T=2.0, steps=20, formulation="reduced")
    pre = sol.stats["presolve"]
    assert pre["newton"]["converged"] and pre["seconds"] >= pre["lbfgs"]["seconds"] + pre["newton"]["seconds"] - 1e-9
    assert sol.success and sol.stats["iterations"] <= 1
    for prob in (linear_ensemble(l1=0.05),  # the L1 split: u⁺, u⁻ >= 0
                 linear_ensemble(control_lower=[-1.0, -1.0], control_upper=[1.0, 1.0])):
        assert not unconstrained(ReducedSpace(prob, 5, "rk4"))
        pre = tp.solve(prob, T=1.0, steps=5).stats["presolve"]
        assert "newton" not in pre and pre["lbfgs"]["iterations"] > 0
    assert unconstrained(ReducedSpace(linear_ensemble(), 5, "rk4"))


def test_ipopt_objective_values_come_from_the_compiled_call_and_equal_casadis():
    """With the compiled gradient, IPOPT's f is that call's J (turnpike.solvers.built_solver puts it in
    place of the NLP's symbolic f): the same number as CasADi's evaluation of the symbolic f, and a
    solve with it takes the iterates of a solve with CasADi's own derivatives of the symbolic NLP."""
    prob = two_circles()
    rs = ReducedSpace(prob, 10, "rk4")
    if not rs.compiled:
        pytest.skip("no C compiler: IPOPT evaluates the symbolic f")
    symbolic = ca.Function("f", [rs.nlp["x"], rs.nlp["p"]], [rs.nlp["f"]])
    f = rs.derivatives()["f"]
    p = rs.parameters(2.0)
    for seed in range(3):
        w = 0.5 * np.random.default_rng(seed).standard_normal(rs.nlp["x"].numel())
        assert float(f(w, p)) == pytest.approx(float(symbolic(w, p)), rel=1e-13)
    opts = {"ipopt.tol": 1e-10, "ipopt.max_iter": 15}
    ours, casadis = (tp.solve(prob, T=2.0, steps=10, formulation="reduced", presolve="none", options=opts,
                              derivatives=d) for d in ("auto", "casadi"))
    assert (ours.stats["derivatives"], casadis.stats["derivatives"]) == ("stage-wise", "casadi")
    assert ours.stats["iterations"] == casadis.stats["iterations"]
    assert ours.cost == pytest.approx(casadis.cost, rel=1e-10)
    np.testing.assert_allclose(ours.u, casadis.u, atol=1e-8)


def test_minibatch_gradients_average_to_the_gradient_over_a_partition_of_the_samples():
    """``minibatch_gradient`` on batches B partitioning the samples, weighted by |B|/N, adds up to J and ∇J
    (the control costs enter each batch once, with weights summing to 1): the same compiled loop on other
    sample sets, against the full gradient, with the L1 split's variables too."""
    for prob in (two_circles(), linear_ensemble(n_samples=13, l1=0.05)):
        rs = ReducedSpace(prob, 6, "rk4")
        if not rs.minibatches:
            pytest.skip("no C compiler: no minibatch gradients")
        rng = np.random.default_rng(2)
        w, p = rs.pack(None, 0.4 * rng.standard_normal((6, prob.nu))), rs.parameters(2.0)
        J, g = rs._value_and_gradient(w, p)
        parts = np.array_split(rng.permutation(prob.n_samples), 3)
        pieces = [(len(b) / prob.n_samples, *rs.minibatch_gradient(w, p, np.sort(b))) for b in parts]
        assert sum(c * Jb for c, Jb, _ in pieces) == pytest.approx(J, rel=1e-13)
        np.testing.assert_allclose(sum(c * gb for c, _, gb in pieces), g, rtol=1e-12, atol=1e-14)


def test_minibatch_adam_lowers_the_cost_and_solve_reports_it_as_a_phase():
    """Adam epochs from the random start lower J (two circles, 400 samples in batches of 150: 20 epochs by
    more than 20%); with
    ``presolve="adam"`` the solve runs them before L-BFGS-B and Newton, reports each phase, calls the
    callback once per epoch, and IPOPT certifies. Too few samples, or multiple shooting: skipped, said so."""
    points, labels = concentric_spheres(400, 2, radii=(1.0, 2.0), seed=0)
    prob = NeuralODEClassification(points, labels, cost="turnpike")
    rs = ReducedSpace(prob, 10, "rk4")
    if not rs.minibatches:
        pytest.skip("no C compiler: no minibatch gradients")
    u0 = 0.1 * np.random.default_rng(0).standard_normal((10, prob.nu))
    p = rs.parameters(2.0)
    res = minibatch_descent(rs, u0, 2.0, epochs=20)
    assert res.iterations == 20 * (400 // 150) and res.message == "20 epochs"
    assert res.cost == pytest.approx(rs._value_and_gradient(rs.pack(None, res.u), p)[0], rel=1e-14)
    assert res.cost < 0.8 * rs._value_and_gradient(rs.pack(None, u0), p)[0]
    assert minibatch_descent(rs, u0, 2.0, batch=201).message == "skipped: 400 samples, fewer than two batches of 201"
    seen = []
    sol = tp.solve(prob, T=2.0, steps=10, presolve="adam", callback=lambda *a: seen.append(a[:2]))
    pre = sol.stats["presolve"]
    assert sol.success and pre["method"] == "Adam, then L-BFGS-B, then Newton (reduced space)"
    assert pre["adam"]["iterations"] == 30 * 2 and [k for phase, k in seen if phase == "adam"] == list(range(1, 31))
    small = two_circles()
    ms = MultipleShooting(small, 10, "rk4")
    skipped = minibatch_descent(ms, np.zeros((10, small.nu)), 2.0, batch=4)
    assert skipped.message.startswith("skipped: the compiled ensemble gradient") and skipped.iterations == 0
