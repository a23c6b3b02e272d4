"""Bad input is refused with a message naming the argument; failures are reported, never hidden."""

import json

import casadi as ca
import numpy as np
import pytest

import turnpike as tp
from problems import LinearQuadratic, Pendulum

x, u = ca.SX.sym("x", 2), ca.SX.sym("u")


def problem(**kw):
    args = {"state": x, "control": u, "dynamics": ca.vertcat(x[1], u), "running_cost": ca.sumsqr(x) + u**2,
            "x0": [1.0, 0.0]}
    args.update(kw)
    return tp.Problem(**args)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"x0": [1.0, 0.0, 0.0]}, r"x0 must have nx = 2"),
        ({"x0": [np.nan, 0.0]}, r"x0 must be finite"),
        ({"x0": np.zeros((2, 2, 2))}, r"x0 must have shape"),
        ({"dynamics": x[0]}, r"dynamics must have 2 entries"),
        ({"running_cost": x}, r"running_cost must have 1 entries"),
        ({"terminal_cost": u**2}, r"terminal_cost must not depend on the control"),
        ({"state": "x"}, r"state must be a CasADi symbol"),
        ({"control_lower": [0.0, 1.0]}, r"control_lower must be a scalar or have shape \(1,\)"),
        ({"control_lower": 1.0, "control_upper": 0.0}, r"control_lower must be <= control_upper"),
        ({"l2": -1.0}, r"l2 must be a finite number >= 0"),
        ({"l1": np.inf}, r"l1 must be a finite number >= 0"),
        ({"l1": 1.0, "control_lower": 0.5}, r"need control bounds that contain 0"),
        ({"data_values": [[1.0]]}, r"data_values was given without the data symbol"),
    ],
)
def test_problem_refuses_bad_input(kw, match):
    with pytest.raises(tp.InputError, match=match):
        problem(**kw)


def test_data_values_shape_is_checked():
    y = ca.SX.sym("y")
    with pytest.raises(tp.InputError, match=r"data_values must have shape \(3, 1\)"):
        problem(x0=np.zeros((3, 2)), data=y, data_values=[1.0, 2.0])
    with pytest.raises(tp.InputError, match=r"data_values is required"):
        problem(data=y)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"T": 0.0, "steps": 10}, r"T must be a finite number > 0, got 0.0"),
        ({"T": -1.0, "steps": 10}, r"T must be a finite number > 0"),
        ({"T": np.nan, "steps": 10}, r"T must be a finite number > 0"),
        ({"T": 1.0, "steps": 0}, r"steps must be an integer >= 1, got 0"),
        ({"T": 1.0, "steps": 2.5}, r"steps must be an integer >= 1, got 2.5"),
        ({"T": 1.0}, r"give exactly one of steps or dt"),
        ({"T": 1.0, "dt": 0.3}, r"dt=0.3 must divide T=1.0"),
        ({"T": 1.0, "steps": 10, "solver": "snopt"}, r"unknown solver 'snopt'; accepted: 'fatrop', 'ipopt'"),
        ({"T": 1.0, "steps": 10, "method": "rk45"}, r"unknown method 'rk45'; accepted: 'euler', 'midpoint', 'rk4'"),
        ({"T": 1.0, "steps": 10, "initial_guess": np.zeros((3, 1))}, r"initial_guess must have shape \(10, 1\)"),
        ({"T": 1.0, "steps": 10, "options": "tol=1"}, r"options must be a dict"),
    ],
)
def test_solve_refuses_bad_arguments(kw, match):
    with pytest.raises(tp.InputError, match=match):
        tp.solve(problem(), **kw)


def test_solve_needs_a_problem():
    with pytest.raises(tp.InputError, match="problem must be a turnpike.Problem, got dict"):
        tp.solve({}, T=1.0, steps=5)


def test_unknown_option_is_a_solver_error_naming_it():
    with pytest.raises(tp.SolverError, match="no_such_option"):
        tp.solve(problem(), T=1.0, steps=5, options={"no_such_option": 1})


def test_unknown_catalogue_name_lists_the_catalogue():
    with pytest.raises(tp.UnknownNameError, match=r"unknown problem name 'nope'; the catalogue has: .*pendulum"):
        tp.catalogue.load("nope")


def test_non_converged_solve_is_reported_not_hidden():
    sol = tp.solve(Pendulum(), T=10.0, steps=100, options={"ipopt.max_iter": 1})
    assert not sol.success
    assert sol.status == "Maximum_Iterations_Exceeded"
    assert "NOT converged" in sol.message


def test_acceptable_level_is_not_success():
    sol = tp.solve(Pendulum(), T=10.0, steps=100,
                   options={"ipopt.tol": 1e-30, "ipopt.acceptable_tol": 1e-2, "ipopt.acceptable_iter": 1})
    assert sol.status == "Solved_To_Acceptable_Level"
    assert not sol.success


def test_evaluation_failure_is_reported_as_not_converged():
    """sqrt(x) at x0 = -1 is NaN: IPOPT stops at once, and both solves say so."""
    z, v = ca.SX.sym("z"), ca.SX.sym("v")
    prob = tp.Problem(state=z, control=v, dynamics=ca.sqrt(z) + v, running_cost=z**2 + v**2, x0=[-1.0])
    sol = tp.solve(prob, T=1.0, steps=5)
    assert not sol.success and sol.status == "Invalid_Number_Detected"
    stat = tp.solve_static(prob)
    assert not stat.success and stat.status == "Invalid_Number_Detected"


def test_fixed_control_is_a_feasible_optimum():
    prob = LinearQuadratic(A=[[0.0]], B=[[1.0]], x0=[0.0], control_lower=1.0, control_upper=1.0)
    sol = tp.solve(prob, T=1.0, steps=5)
    assert sol.success
    np.testing.assert_allclose(sol.u, 1.0)
    np.testing.assert_allclose(sol.x[:, 0], sol.t, atol=1e-12)


def test_save_and_load_round_trip(tmp_path):
    prob = LinearQuadratic(A=[[0.0, 1.0], [-1.0, 0.0]], B=[[0.0], [1.0]], target=[1.0, 0.0], x0=np.zeros((2, 2)))
    sol = tp.solve(prob, T=3.0, steps=30)
    path = sol.save(tmp_path / "sol")
    assert path.suffix == ".npz"
    back = tp.Solution.load(path)
    for name in ("t", "x", "u", "adjoint"):
        np.testing.assert_array_equal(getattr(back, name), getattr(sol, name))
    assert (back.success, back.status, back.cost, back.T, back.steps) == (sol.success, sol.status, sol.cost, 3.0, 30)
    assert back.cost_terms == sol.cost_terms and back.stats == sol.stats
    stat = tp.solve_static(prob)
    back_static = tp.StaticSolution.load(stat.save(tmp_path / "static.npz"))
    np.testing.assert_array_equal(back_static.x, stat.x)
    with pytest.raises(tp.InputError, match="does not hold a Solution"):
        tp.Solution.load(tmp_path / "static.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(tp.InputError, match="is not a turnpike result file"):
        tp.Solution.load(tmp_path / "bad.npz")
    assert tp.Solution.load(tmp_path / "sol").steps == 30  # the name given to save, without its .npz


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        ("empty", "is not a turnpike result file"),
        ("truncated", "is not a turnpike result file"),
        ("text", "is not a turnpike result file"),
        ("x of another shape", r"inconsistent Solution: x must have shape \(11, 3\) for steps=10, got \(3, 3\)"),
        ("T moved", r"inconsistent Solution: t must run from 0 to T=99.0, got 0.0 to 5.0"),
        ("missing", "does not exist"),
    ],
)
def test_damaged_result_files_are_one_clear_error_each(tmp_path, damage, match):
    sol = tp.solve(Pendulum(), T=5.0, steps=10)
    path = sol.save(tmp_path / "sol.npz")
    if damage in ("x of another shape", "T moved"):
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays["metadata"]))
        if damage == "T moved":
            meta["T"] = 99.0
        else:
            arrays["x"] = np.zeros((3, 3))
        arrays["metadata"] = np.array(json.dumps(meta))
        np.savez(path, **arrays)
    elif damage == "missing":
        path = tmp_path / "nothing.npz"
    else:
        content = {"empty": b"", "truncated": path.read_bytes()[:200], "text": b"T = 5\nx = 1 2 3\n"}[damage]
        path.write_bytes(content)
    with pytest.raises(tp.InputError, match=match):
        tp.Solution.load(path)


def test_results_are_immutable():
    sol = tp.solve(Pendulum(), T=2.0, steps=10)
    with pytest.raises(ValueError):
        sol.x[0, 0] = 1.0
    with pytest.raises(AttributeError):
        sol.cost = 0.0


def test_warm_start_from_a_solution_converges_at_once():
    prob = Pendulum()
    first = tp.solve(prob, T=10.0, steps=100)
    again = tp.solve(prob, T=10.0, steps=100, initial_guess=first)
    assert again.success and again.stats["iterations"] <= 2
    assert again.stats["reused_solver"]
    finer = tp.solve(prob, T=10.0, steps=200, initial_guess=first)
    assert finer.success
    np.testing.assert_allclose(finer.cost, first.cost, rtol=1e-3)


def test_a_problem_keeps_only_its_last_solver():
    """A built solver holds its last solve's IPOPT state until it is freed: a problem keeps one, the last."""
    import weakref

    from turnpike import solvers

    prob = Pendulum()
    coarse = tp.solve(prob, T=4.0, steps=20)
    (first,) = solvers._cache[prob].values()
    freed = weakref.ref(first.solver)
    del first
    fine = tp.solve(prob, T=4.0, steps=40)
    assert len(solvers._cache[prob]) == 1 and freed() is None  # the 20-step solver is gone
    again = tp.solve(prob, T=4.0, steps=40)
    assert again.stats["reused_solver"] and not fine.stats["reused_solver"]
    back = tp.solve(prob, T=4.0, steps=20)
    assert not back.stats["reused_solver"]
    assert coarse.success and back.success and back.cost == pytest.approx(coarse.cost, rel=1e-9)
