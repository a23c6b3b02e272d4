"""Sweeps: the same table serially, on a local pool and on Dask; checkpoints that survive Ctrl-C, killed
workers and corruption; strict input handling of `turnpike sweep`."""

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from sweep_factories import crashing_lq, dies_sending_its_result

import turnpike as tp
from problems import LinearQuadratic
from turnpike.cli import main
from turnpike.errors import InputError, UnknownNameError
from turnpike.sweeps import executors
from turnpike.sweeps.executors import _sigint_noted
from turnpike.sweeps.tasks import WorkerLost

# 2 parameter points x 3 horizons x 2 seeds = 12 solves (and 2 static problems)
GRID = dict(params={"control_weight": [1.0, 2.0]}, steps=20, seeds=[0, 1])
HORIZONS = [2.0, 4.0, 6.0]
TIMING = {"total_seconds"}  # the only columns that may differ between two runs of one sweep


def lq(tmp_path, name, **kwargs):
    return tp.sweep("linear-quadratic", HORIZONS, tmp_path / name, **{**GRID, "figures": False, "progress": False,
                                                                      **kwargs})


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def assert_same_table(rows, expected):
    """Same rows in the same order; numbers equal to 1e-7 relative (or 1e-9 absolute), words and flags exactly. A
    number printed in a message counts as a number: a rate near 1e-13 differs in its digits from run to run."""
    assert len(rows) == len(expected)
    for row, ref in zip(rows, expected, strict=True):
        assert row.keys() == ref.keys()
        for key in ref.keys() - TIMING:
            if isinstance(ref[key], float) and not isinstance(ref[key], bool):
                np.testing.assert_allclose(row[key], ref[key], rtol=1e-7, atol=1e-9, err_msg=key)
            elif isinstance(ref[key], str) and isinstance(row[key], str):
                assert _NUMBER.split(row[key]) == _NUMBER.split(ref[key]), key
                np.testing.assert_allclose([float(x) for x in _NUMBER.findall(row[key])],
                                           [float(x) for x in _NUMBER.findall(ref[key])], rtol=1e-3, atol=1e-9,
                                           err_msg=key)
            else:
                assert row[key] == ref[key], key


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    return lq(tmp_path_factory.mktemp("serial"), "out", workers=1)


def test_serial_sweep_is_a_horizon_comparison_per_point_and_seed(serial):
    # Each (point, seed) block is what compare_horizons gives for that problem and seed, without continuation.
    assert len(serial.rows) == 12 and serial.success
    assert [(r["point"], r["T"], r["seed"]) for r in serial.rows] == [
        (p, T, s) for p in (0, 1) for T in HORIZONS for s in (0, 1)]
    for point, weight in enumerate(GRID["params"]["control_weight"]):
        problem = LinearQuadratic.example(control_weight=weight)
        for seed in GRID["seeds"]:
            study = tp.compare_horizons(problem, HORIZONS, steps=20, continuation=False, seed=seed, progress=False)
            block = [r for r in serial.rows if r["point"] == point and r["seed"] == seed]
            expected = [{"point": point, "control_weight": weight, "seed": seed, **row,
                         "static_success": True} for row in study.rows()]
            assert_same_table([{k: r[k] for k in e} for r, e in zip(block, expected, strict=True)], expected)


def test_table_files_hold_the_rows(serial):
    out = Path(serial.files[0]).parent
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["columns"] == list(serial.columns)
    assert_same_table(saved["rows"], [dict(r) for r in serial.rows])
    with open(out / "sweep.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [float(r["cost"]) for r in table] == [r["cost"] for r in serial.rows]
    assert [float(r["control_weight"]) for r in table] == [1.0] * 6 + [2.0] * 6
    assert len(list((out / "checkpoints").glob("*.npz"))) == 14


def test_local_pool_gives_the_serial_table(serial, tmp_path):
    pooled = lq(tmp_path, "pool", workers=2)
    assert_same_table(pooled.rows, serial.rows)
    assert len(pooled.solved) == 14 and not pooled.reused


@pytest.mark.slow
def test_dask_cluster_gives_the_serial_table(serial, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        on_dask = lq(tmp_path, "dask", scheduler=cluster.scheduler_address)
    assert_same_table(on_dask.rows, serial.rows)
    assert len(on_dask.solved) == 14


def test_rerun_reads_every_solve_from_its_checkpoint(serial, tmp_path):
    first = lq(tmp_path, "out", workers=1)
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "checkpoints").iterdir()}
    again = lq(tmp_path, "out", workers=2)
    assert again.solved == () and len(again.reused) == 14
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "checkpoints").iterdir()} == files
    assert_same_table(again.rows, first.rows)
    # another integrator makes other horizon solves; the static problems do not depend on it
    euler = lq(tmp_path, "out", workers=1, method="euler")
    assert len(euler.solved) == 12 and euler.reused == ("point 0 static", "point 1 static")


def test_corrupted_checkpoints_are_reported_and_solved_again(serial, tmp_path):
    first = lq(tmp_path, "out", workers=1)
    directory = tmp_path / "out" / "checkpoints"
    truncated, edited, intact = (sorted(directory.glob(f"{stem}-*.npz"))[0] for stem in ("T4-seed1", "T6-seed0",
                                                                                         "T6-seed1"))
    truncated.write_bytes(truncated.read_bytes()[:300])
    with np.load(edited) as data:  # a valid archive whose record no longer matches its digest
        record = json.loads(str(data["record"]))
        arrays = {k: data[k] for k in data.files if k != "record"}
    record["fields"]["cost"] = 0.0
    with open(edited, "wb") as fh:
        np.savez(fh, record=np.array(json.dumps(record)), **arrays)
    before = intact.stat().st_mtime_ns

    with pytest.warns(tp.CheckpointWarning) as caught:
        again = lq(tmp_path, "out", workers=1)
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    assert str(truncated) in " ".join(messages) and "unreadable" in " ".join(messages)
    assert str(edited) in " ".join(messages) and "does not match its SHA-256 digest" in " ".join(messages)
    assert len(again.solved) == 2 and len(again.reused) == 12 and len(again.corrupted) == 2
    assert_same_table(again.rows, first.rows)
    assert intact.stat().st_mtime_ns == before
    with warnings.catch_warnings():  # the redone checkpoints are trusted again
        warnings.simplefilter("error", tp.CheckpointWarning)
        assert len(lq(tmp_path, "out", workers=1).reused) == 14


def test_failed_and_raising_solves_are_finished_rows(tmp_path):
    def run(name, problem, options):
        return tp.sweep(problem, [2.0, 4.0], tmp_path / name, steps=40, options=options, workers=1, figures=False,
                        progress=False)

    capped = run("capped", "pendulum", {"ipopt.max_iter": 1})
    assert [r["status"] for r in capped.rows] == ["Maximum_Iterations_Exceeded"] * 2
    assert not any(r["success"] for r in capped.rows)
    assert all(r["cost"] is None and r["last_cost"] > 0 for r in capped.rows)  # a failed row has no optimal value
    raising = run("raising", "linear-quadratic", {"bogus_option": 1})
    for row in raising.rows:
        assert row["status"].startswith("exception: SolverError: could not build solver='ipopt'")
        assert not row["success"] and row["cost"] is None and row["static_success"]
    assert not capped.success and not raising.success
    for name, problem, options in (("capped", "pendulum", {"ipopt.max_iter": 1}),
                                   ("raising", "linear-quadratic", {"bogus_option": 1})):
        assert run(name, problem, options).solved == ()  # finished rows, not solved again


def test_a_worker_that_dies_is_reported_and_retried_by_the_next_run(tmp_path):
    # every solve of points 1 and 3 kills its worker; those of points 0 and 2, lost with them, must finish
    kwargs = dict(params={"target": [1.0, 2.0], "crash": [False, True]}, steps=2000, workers=2, figures=False,
                  progress=False)
    with pytest.warns(RuntimeWarning, match="a worker process died"):
        result = tp.sweep(crashing_lq, [1.0, 2.0, 3.0], tmp_path, **kwargs)
    for point in result.points:
        rows = [r for r in result.rows if r["point"] == point["point"]]
        if point["params"]["crash"]:
            assert point["static_status"].startswith("worker died")
            assert all(r["status"].startswith("worker died") and not r["success"] for r in rows)
        else:
            assert point["static_success"] and all(r["success"] for r in rows)
    assert len(list((tmp_path / "checkpoints").glob("*.npz"))) == 8  # points 0 and 2: a lost solve is no result
    with pytest.warns(RuntimeWarning, match="a worker process died"):
        again = tp.sweep(crashing_lq, [1.0, 2.0, 3.0], tmp_path, **kwargs)
    assert sorted(again.solved) == sorted(f"point {p} {what}" for p in (1, 3)
                                          for what in ("static", "T=1 seed=0", "T=2 seed=0", "T=3 seed=0"))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(factory=lambda: None), InputError, "cannot be sent to a worker process"),
        (dict(factory="nope"), UnknownNameError, "unknown problem name 'nope'"),
        (dict(params={"gain": [1.0]}), UnknownNameError, "has no parameter 'gain'; it accepts: target"),
        (dict(params={"target": [math.nan]}), InputError, r"params\['target'\] must be finite"),
        (dict(params={"target": []}), InputError, "must be a non-empty list"),
        (dict(params={"target": [1.0, 1.0]}), InputError, r"params\['target'\] has the value 1.0 more than once"),
        (dict(params={"T": [1.0]}), UnknownNameError, "has no parameter 'T'"),
        (dict(params={"1x": [1.0]}), InputError, "params has the key '1x'; a parameter name is an identifier"),
        (dict(params={"cost": [1.0], "param_cost": [2.0]}), InputError, "would share a column"),
        (dict(params={"control_weight": [-1.0]}), InputError, "with control_weight=-1.0: control_weight must be"),
        (dict(params={"x0": [[0.0, 0.0, 0.0]]}), InputError, "x0 must have nx = 2 entries"),
        (dict(horizons=[2.0, -1.0]), InputError, "horizons must be a finite number > 0, got -1.0"),
        (dict(horizons=[math.inf]), InputError, "horizons must be a finite number > 0, got inf"),
        (dict(steps=0), InputError, "steps must be an integer >= 1, got 0"),
        (dict(steps=None, dt=0.3), InputError, "dt=0.3 must divide T=2.0"),
        (dict(seeds=[True]), InputError, "seeds must be integers >= 0, got True"),
        (dict(workers=0), InputError, "workers must be an integer >= 1, got 0"),
        (dict(workers=2, scheduler="tcp://127.0.0.1:1"), InputError, "give workers or scheduler, not both"),
        (dict(options=[1]), InputError, "options must be a dict"),
        (dict(epsilon=math.nan), InputError, "epsilon must be a finite number > 0"),
    ],
)
def test_bad_arguments_are_refused_before_any_solve(tmp_path, kwargs, error, message):
    args = {"factory": "linear-quadratic", "horizons": [2.0], "steps": 10, **kwargs}
    with pytest.raises(error, match=message):
        tp.sweep(args.pop("factory"), args.pop("horizons"), tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()


def test_a_scheduler_without_dask_installed_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed now raises ImportError
    with pytest.raises(InputError, match=r"needs Dask distributed, which is not installed: .*turnpike\[dask\]"):
        tp.sweep("linear-quadratic", [1.0], tmp_path, steps=5, scheduler="tcp://127.0.0.1:8786")


def test_catalogue_entries_take_keyword_parameters():
    problem = tp.catalogue.load("linear-quadratic", control_weight=4.0, target=2.0)
    np.testing.assert_array_equal(problem.R, [[4.0]])
    np.testing.assert_array_equal(problem.target, [2.0, 0.0])
    assert tp.catalogue.load("pendulum", target_angle=0.5).target_angle == 0.5
    with pytest.raises(UnknownNameError, match="catalogue entry 'pendulum' has no parameter 'mass'; it accepts: "
                                               "target_angle, damping, control_weight, x0"):
        tp.catalogue.load("pendulum", mass=1.0)


# -- the command: interruption, killed workers, bad input ------------------------------------------------
# 16000 steps make each horizon solve take 0.3-0.9 s, so that the sweep is still running when the tests below
# interrupt it after a few checkpoints (with 4000 steps a loaded CI machine saw the sweep finish first).
PENDULUM = ["sweep", "pendulum", "--param", "control_weight=0.5,1", "--horizons", "10", "20", "30",
            "--steps", "16000", "--seeds", "0", "1", "--no-figures"]


def command(*args):
    return [sys.executable, "-m", "turnpike.cli", *args]


def wait_for(condition, timeout=60.0):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def fingerprints(directory: Path) -> dict:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in directory.glob("*.npz")}


def assert_complete(out: Path):
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    keys = [(r["point"], r["T"], r["seed"]) for r in rows]
    assert sorted(keys) == sorted((p, T, s) for p in (0, 1) for T in (10.0, 20.0, 30.0) for s in (0, 1))
    assert all(r["success"] for r in rows)
    assert len(list((out / "checkpoints").glob("*.npz"))) == 14
    assert not list((out / "checkpoints").glob(".*"))  # no temporary file left behind


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_loses_only_the_solves_in_flight(tmp_path, workers):
    out = tmp_path / "out"
    args = [*PENDULUM, "--workers", workers, "--out", str(out)]
    # Ctrl-C in a terminal: SIGINT at its default in the child, even when this test runs as a background
    # job (where the shell starts it, and so the child, with SIGINT ignored).
    proc = subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for(lambda: len(list(out.glob("checkpoints/*.npz"))) >= 3)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("turnpike: interrupted: ") and "run the same sweep again" in last
    assert "Traceback" not in stderr
    finished = fingerprints(out / "checkpoints")
    assert 3 <= len(finished) < 14

    rerun = subprocess.run(command(*args), capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{14 - len(finished)} solved now, {len(finished)} read from checkpoints" in rerun.stdout
    after = fingerprints(out / "checkpoints")
    assert {name: after[name] for name in finished} == finished  # same inode, mtime and bytes: not solved again
    assert_complete(out)


def descendants(pid: int) -> dict[int, int]:
    """Every process below ``pid``, as ``{pid: parent pid}`` (from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        if entry.name.isdigit():
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    below, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent:
                below[child] = ppid
                frontier.append(child)
    return below


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker processes in /proc")
def test_a_killed_worker_does_not_stop_the_sweep(tmp_path):
    out = tmp_path / "out"
    args = [*PENDULUM, "--workers", "2", "--out", str(out)]
    proc = subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(list(out.glob("checkpoints/*.npz"))) >= 3)
    finished = fingerprints(out / "checkpoints")
    # the pool's workers are the grandchildren (children of the fork server); children are helpers
    workers = [p for p, parent in descendants(proc.pid).items() if parent != proc.pid]
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "turnpike: warning: a worker process died" in stderr
    assert "14 solved now" in stdout
    after = fingerprints(out / "checkpoints")
    assert {name: after[name] for name in finished} == finished
    assert_complete(out)


@pytest.mark.skipif(sys.platform == "win32", reason="the result queue has no write lock there")
@pytest.mark.filterwarnings("ignore:a worker process died")
def test_a_worker_that_dies_while_sending_its_result_does_not_hang_the_pool(monkeypatch):
    # Its half-sent message blocks the pool's own detection of dead workers (CPython reads the rest forever),
    # so run_pool has to notice the death itself; then the task alone kills its worker again: WorkerLost.
    results = {}

    def consume():
        for task, result in executors.run_pool(["a", "die", "b", "c"], 2, run=dies_sending_its_result):
            results[task] = result

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), f"run_pool hung, with {results} yielded"
    assert {task: results[task] for task in "abc"} == {"a": "a", "b": "b", "c": "c"}
    assert isinstance(results["die"], WorkerLost)


@pytest.mark.slow
def test_cli_sweep_writes_table_and_figures_and_reports_a_corrupted_checkpoint(tmp_path):
    args = ["sweep", "linear-quadratic", "--param", "target=1,2", "--horizons", "2", "4", "--dt", "0.2",
            "--workers", "1", "--out", str(tmp_path)]
    proc = subprocess.run(command(*args), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "6/6" in proc.stderr  # the progress bar counts finished solves
    rows = json.loads((tmp_path / "sweep.json").read_text())["rows"]
    assert [(r["target"], r["T"], r["steps"]) for r in rows] == [(1, 2.0, 10), (1, 4.0, 20), (2, 2.0, 10),
                                                                 (2, 4.0, 20)]
    for point in ("point0", "point1"):
        for name in ("distance.png", "trajectories.png", "value_and_rate.png"):
            assert (tmp_path / point / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    victim = next((tmp_path / "checkpoints").glob("T4-*.npz"))
    victim.write_bytes(b"garbage")
    proc = subprocess.run(command(*args, "--no-figures"), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    warning = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert warning == [f"turnpike: warning: checkpoint {victim} is corrupted: unreadable (not an .npz archive); "
                       "solving it again"]
    assert "1 solved now, 5 read from checkpoints" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "unknown problem name 'nope'; the catalogue has: "),
        (["linear-quadratic", "--param", "gain=1"], "catalogue entry 'linear-quadratic' has no parameter 'gain'"),
        (["linear-quadratic", "--param", "target=nan"], "--param target: 'nan' is not a finite number"),
        (["linear-quadratic", "--param", "target=1,inf"], "--param target: 'inf' is not a finite number"),
        (["linear-quadratic", "--param", "x0=[0,NaN]"], "--param x0: '[0,NaN]' must hold finite numbers only"),
        (["linear-quadratic", "--param", "x0=[0,0,0]"], "linear-quadratic with x0=[0, 0, 0]: x0 must have nx = 2"),
        (["linear-quadratic", "--param", "control_weight=0"], "control_weight must be a finite number > 0, got 0"),
        (["linear-quadratic", "--param", "target"], "--param 'target' must read KEY=V1,V2,..."),
        (["linear-quadratic", "--param", "target=1", "--param", "target=2"], "--param target is given twice"),
        (["linear-quadratic", "--horizons", "0"], "horizons must be a finite number > 0, got 0.0"),
        (["linear-quadratic", "--horizons", "nan"], "horizons must be a finite number > 0, got nan"),
        (["linear-quadratic", "--steps", "0"], "steps must be an integer >= 1, got 0"),
        (["linear-quadratic", "--steps", "2.5"], "argument --steps: invalid int value: '2.5'"),
        (["linear-quadratic", "--steps", None, "--dt", "0.3"], "dt=0.3 must divide T=1.0"),
        (["linear-quadratic", "--seeds", "1", "1"], "seeds must be distinct, got [1, 1]"),
        (["linear-quadratic", "--workers", "0"], "workers must be an integer >= 1, got 0"),
        (["linear-quadratic", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"],
         "argument --scheduler: not allowed with argument --workers"),
        (["linear-quadratic", "--scheduler", "foo://host"], "scheduler='foo://host' is not a Dask scheduler address"),
    ],
)
def test_cli_usage_errors_exit_2_with_one_line(tmp_path, capsys, args, message):
    full = ["sweep", *args, "--out", str(tmp_path / "out")]
    for flag, value in {"--horizons": "1", "--steps": "5"}.items():
        if flag not in full:
            full += [flag, value]
    if None in full:  # "--steps None": leave the grid to --dt
        i = full.index(None)
        del full[i - 1:i + 1]
    try:
        code = main(full)  # returns: no exception, so no traceback
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    assert message in stderr and len(stderr.strip().splitlines()) == 1
    if "foo://host" not in args:  # the scheduler is contacted once the checkpoints show work to do
        assert not (tmp_path / "out").exists()


def test_cli_usage_error_without_traceback_from_the_installed_command(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = subprocess.run(command("sweep", "linear-quadratic", "--horizons", "1", "--steps", "5",
                                  "--out", str(blocker / "sub")), capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"turnpike: error: out {str(blocker / 'sub')!r} is not a writable directory: " \
                                  "Not a directory"


def test_a_process_started_with_sigint_ignored_stays_immune():
    """As Python itself does: a background job (SIGINT ignored by the shell) is not interrupted by SIGINT."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with _sigint_noted() as noted:
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        assert not noted["interrupted"]
    finally:
        signal.signal(signal.SIGINT, previous)
