"""Many starts of one solve (turnpike.multistart): the best certified local optimum, wherever the starts run."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import turnpike as tp
from problems.neural_ode import NeuralODEClassification
from turnpike.multistart import multistart

multistart_module = sys.modules["turnpike.multistart"]  # the package's attribute of that name is the function

T, STEPS = 3.0, 15


@pytest.fixture(scope="module")
def problem():
    return NeuralODEClassification.example(n_points=12, field="inner")


@pytest.fixture(scope="module")
def serial(problem):
    return multistart(problem, T, STEPS, starts=4, certify=2, workers=1)


@pytest.fixture(scope="module")
def one_blas_thread():
    """The serial table from a process whose BLAS runs on one thread, as the workers' does: the same arithmetic
    (the compiled loops' sums do not depend on their threads), so the same numbers to the last digit."""
    script = ("import json, sys; from problems.neural_ode import NeuralODEClassification as C; "
              "from turnpike.multistart import multistart; "
              f"sol = multistart(C.example(n_points=12, field='inner'), {T}, {STEPS}, starts=4, certify=2, workers=1); "
              "json.dump(sol.stats['starts'], sys.stdout)")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def same_table(a, b):
    assert [r["seed"] for r in a] == [r["seed"] for r in b]
    for x, y in zip(a, b, strict=True):
        assert x["certified"] == y["certified"] and x["status"] == y["status"]
        for key in ("first_order_cost", "cost"):
            assert (x[key] is None) == (y[key] is None)
            if x[key] is not None:
                assert x[key] == pytest.approx(y[key], rel=1e-12)


def test_one_start_is_a_plain_solve(problem):
    one, plain = multistart(problem, T, STEPS, starts=1, seed=3), tp.solve(problem, T, STEPS, seed=3)
    assert one.cost == plain.cost and np.array_equal(one.u, plain.u) and "starts" not in one.stats


def test_the_best_certified_start_is_returned_with_its_table(problem, serial):
    """The table has a row per start; the ``certify`` starts of lowest first-order cost are certified, the others
    not tried; the solution is the certified one of lowest cost, and certifying from seed 0's first-order
    controls gives the plain solve from seed 0 (the same phases, in two calls)."""
    rows = serial.stats["starts"]
    assert [r["seed"] for r in rows] == [0, 1, 2, 3]
    order = sorted(rows, key=lambda r: r["first_order_cost"])
    assert all(r["certified"] is True for r in order[:2]) and all(r["certified"] is None for r in order[2:])
    assert serial.success and serial.cost == min(r["cost"] for r in order[:2])
    assert serial.stats["multistart"]["best_seed"] == min(order[:2], key=lambda r: r["cost"])["seed"]
    everything = multistart(problem, T, STEPS, starts=4, certify=4, workers=1)
    assert everything.cost <= serial.cost + 1e-12
    assert everything.cost <= tp.solve(problem, T, STEPS, seed=0).cost + 1e-9
    certified = [r["cost"] for r in everything.stats["starts"]]
    assert all(r["certified"] for r in everything.stats["starts"]) and everything.cost == min(certified)


def test_a_process_pool_gives_the_serial_table(problem, serial, one_blas_thread):
    pooled = multistart(problem, T, STEPS, starts=4, certify=2, workers=2)
    same_table(pooled.stats["starts"], one_blas_thread)
    assert pooled.stats["multistart"]["where"] == "2 local processes"
    assert pooled.cost == pytest.approx(serial.cost, rel=1e-7)  # this process's BLAS threads: the same optimum


@pytest.mark.slow
def test_a_dask_cluster_gives_the_serial_table(problem, one_blas_thread):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        on_dask = multistart(problem, T, STEPS, starts=4, certify=2, scheduler=client)
        by_address = multistart(problem, T, STEPS, starts=2, certify=1, scheduler=cluster.scheduler_address)
    same_table(on_dask.stats["starts"], one_blas_thread)
    assert on_dask.stats["multistart"]["where"] == "Dask" and by_address.stats["multistart"]["starts"] == 2


def test_a_start_that_raises_is_a_row(problem, monkeypatch):
    real = multistart_module.first_order

    def flaky(prob, T, steps, *, seed, **kw):
        if seed == 1:
            raise RuntimeError("injected fault")
        return real(prob, T, steps, seed=seed, **kw)

    monkeypatch.setattr(multistart_module, "first_order", flaky)
    sol = multistart(problem, T, STEPS, starts=3, certify=3, workers=1)
    rows = {r["seed"]: r for r in sol.stats["starts"]}
    assert rows[1]["status"] == "exception: RuntimeError: injected fault" and rows[1]["certified"] is None
    assert np.isnan(rows[1]["first_order_cost"]) and rows[0]["certified"] and rows[2]["certified"]
    assert sol.success


@pytest.mark.parametrize("kw, match", [
    ({"starts": 0}, r"starts must be an integer >= 1, got 0"),
    ({"starts": 2.5}, r"starts must be an integer"),
    ({"starts": 3, "certify": 4}, r"certify must be between 1 and starts = 3, got 4"),
    ({"workers": 0, "starts": 2}, r"workers must be an integer >= 1, got 0"),
    ({"workers": 2, "scheduler": "tcp://127.0.0.1:1", "starts": 2}, r"give workers or scheduler, not both"),
    ({"scheduler": "", "starts": 2}, r"scheduler must be the address of a Dask scheduler"),
    ({"seed": -1}, r"seed must be an integer >= 0, got -1"),
    ({"callback": print}, r"multistart passes only method, solver, .* got callback"),
])
def test_bad_arguments_are_named(problem, kw, match):
    with pytest.raises(tp.InputError, match=match):
        multistart(problem, T, STEPS, **kw)


def test_a_horizon_study_keeps_the_better_of_its_starts_and_its_continuation(problem):
    """With starts > 1 each horizon is the best certified of the multistart and (after the first horizon) the
    warm start from the previous one: never worse than either alone."""
    study = tp.compare_horizons(problem, [2.0, 4.0], dt=0.2, starts=3, workers=1, progress=False)
    plain = tp.compare_horizons(problem, [2.0, 4.0], dt=0.2, progress=False)
    for best, one in zip(study.solutions, plain.solutions, strict=True):
        assert best.success and best.cost <= one.cost + 1e-9
        certified = [r["cost"] for r in best.stats["starts"] if r["certified"]]
        assert best.cost <= min(certified) + 1e-12
        assert best.stats["multistart"]["kept"] in ("continuation", f"start {best.stats['multistart']['best_seed']}")
    assert study.settings["starts"] == 3
    with pytest.raises(tp.InputError, match=r"certify must be between 1 and starts = 2, got 3"):
        tp.compare_horizons(problem, [2.0], dt=0.2, starts=2, certify=3)


def test_the_cli_solves_from_several_starts_and_draws_their_optima(tmp_path):
    from turnpike.cli import main

    code = main(["solve", "neural-ode", "--T", "3", "--steps", "15", "--starts", "3", "--workers", "1",
                 "--out", str(tmp_path)])
    assert code in (0, 3)  # 3: converged with a step warning (15 RK4 steps are coarse for this field)
    assert (tmp_path / "starts.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = tp.Solution.load(tmp_path / "neural-ode_T3.npz")
    assert [r["seed"] for r in saved.stats["starts"]] == [0, 1, 2]
    assert main(["solve", "neural-ode", "--T", "3", "--steps", "15", "--starts", "2", "--certify", "3",
                 "--out", str(tmp_path)]) == 2


def test_a_sweep_solve_from_several_starts_is_another_checkpoint(tmp_path):
    """``starts`` is part of a sweep solve's identity: the same grid with more starts is solved anew."""
    one = tp.sweep("neural-ode", [2.0], tmp_path, steps=10, workers=1, figures=False, progress=False)
    three = tp.sweep("neural-ode", [2.0], tmp_path, steps=10, workers=1, figures=False, progress=False, starts=3)
    assert len(three.solved) == 1 and three.rows[0]["cost"] <= one.rows[0]["cost"] + 1e-9
