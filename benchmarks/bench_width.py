"""Realistic widths: the seed papers' chessboard network, and a width sweep, against PyTorch in the same run.

Run (one core: every job sets ``OMP_NUM_THREADS=1`` and ``TURNPIKE_THREADS=1``; torch runs on one thread)::

    python benchmarks/bench_width.py                    # both parts (about 75 minutes)
    python benchmarks/bench_width.py --only sweep       # the width sweep alone (a few minutes)
    python benchmarks/bench_width.py --only chessboard --activations relu --budget 300
    python benchmarks/bench_width.py --only chessboard --train-points 200 --budget 20 --toolbox-limit 20  # smoke

Part 1, ``chessboard``: the set-up of the authors' trainer. A 3×3 chessboard in ``[-0.9, 0.9]²`` with
gaps of 0.09 (``problems.datasets.chessboard``, 2997 points, seed 0), 80% of it for training (2397
points, a seeded permutation); the bottleneck field ``W2 σ(W1 x + b1) + b2`` of width 50 with one
augmented coordinate (353 controls per stage), RK4, T = 5, 16 steps, squared loss on the last
coordinate, cost (B) with λ = 1e-2, α = 1. For each activation (``--activations``, default ReLU and
softplus):

* ``toolbox, presolve=...``: ``turnpike.solve`` from its random start (seed 0), with each ``presolve`` of
  ``--presolves`` (default ``auto``, and ``adam``: minibatch Adam epochs first) and
  ``time_limit=--toolbox-limit`` (the whole solve; until commit dffa8c4 it held for the presolve's phases,
  and IPOPT then had as long again: the results of earlier commits were measured so): its time to
  100% training accuracy (the first presolve iterate that separates the training set, recorded by the
  solve's callback; the accuracy of the recorded iterates is computed after the solve), its total time
  and whether IPOPT certified the answer (``success``), ``‖∇J‖∞`` at the answer, the second-order
  verdict, held-out accuracy;
* ``adam-150``, ``adam-full``, ``lbfgs``: PyTorch (float64) training of the same network and cost from
  the same start (``baseline_torch.py``): Adam (lr 1e-2) with batches of 150 and full batch, and
  L-BFGS (5 iterations per step call). Each runs until it has reached both 100% training accuracy and
  a cost within 1% of the toolbox's (the lowest of its rows), or ``--budget`` seconds; the time to each target is
  reported (accuracy and full cost checked after every epoch or L-BFGS step call, their time not counted).

Part 2, ``sweep``: the same data at N = 1000 (``--sweep-points``), 16 steps, widths 16, 50, 100, 200:
the build of the toolbox's transcription (``ReducedSpace``, with a fresh compilation cache: the first
solve on a machine), one gradient, one exact Hessian-vector product (compiled where the stage functions
are within the compile budget, else CasADi's matrix path; both when both exist), against one torch
forward + backward of the same network in float64. Times are the median of 5 (after one warm-up). The
compilers' peak memory during the build and during the Hessian-vector product's first call (where its
library is compiled) is the largest sum of the resident sets of the job's compiler processes (cc, cc1, as,
ld), read from /proc every 0.1 s.

Every job is a fresh process; its peak memory is that process's peak resident set size. Results are
printed and saved as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

T, STEPS, WIDTH = 5.0, 16, 50


def chessboard_problem(activation: str, hidden: int, n_train: int | None = 2397):
    """The training problem and the held-out points and labels."""
    from problems.datasets import chessboard
    from problems.neural_ode import NeuralODEClassification

    points, labels = chessboard(2997, seed=0)
    order = np.random.default_rng(0).permutation(len(points))
    train, test = order[:n_train], order[n_train:]
    problem = NeuralODEClassification(points[train], labels[train], field="bottleneck", hidden=hidden, augment=1,
                                      activation=activation, cost="turnpike", weight=1e-2, alpha=1.0)
    return problem, points[test], labels[test]


class CompilerMemory:
    """Within: the peak over time of the summed resident sets of this process's compiler descendants (cc, cc1,
    as, ld, ...), read from /proc every 0.1 s by a thread; ``peak_mb`` after (None where /proc is missing)."""

    NAMES = {"cc", "gcc", "cc1", "as", "ld", "collect2"}

    def __enter__(self):
        import threading

        self.peak_mb, self._done = (0.0 if Path("/proc").exists() else None), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        if self.peak_mb is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        if self.peak_mb is not None:
            self._thread.join()

    def _sample(self):
        while not self._done.wait(0.1):
            self.peak_mb = max(self.peak_mb, self._compilers_kb() / 1024)

    def _compilers_kb(self) -> int:
        parents, names, rss = {}, {}, {}
        for entry in Path("/proc").iterdir():
            try:
                stat, status = (entry / "stat").read_text(), (entry / "status").read_text()
                pid = int(entry.name)
            except (OSError, ValueError):
                continue
            names[pid] = stat[stat.index("(") + 1: stat.rindex(")")]
            parents[pid] = int(stat[stat.rindex(")") + 2:].split()[1])
            rss[pid] = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")), 0)
        me, total = os.getpid(), 0
        for pid, name in names.items():
            ancestor = pid
            while ancestor > 1 and ancestor != me:
                ancestor = parents.get(ancestor, 0)
            total += rss[pid] if name in self.NAMES and ancestor == me else 0
        return total


def _median_seconds(call, repeats: int = 5) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def job_toolbox(spec: dict) -> dict:
    import turnpike as tp

    problem, test_points, test_labels = chessboard_problem(spec["activation"], WIDTH, spec["points"])
    records = []
    start = time.perf_counter()

    def record(phase, iteration, cost, u):
        records.append((time.perf_counter() - start, phase, cost, u))

    sol = tp.solve(problem, T=T, steps=STEPS, callback=record, time_limit=spec["time_limit"],
                   presolve=spec["presolve"])
    def separates(index):
        u = records[index][3]
        return problem.accuracy(problem.flow(_with_controls(sol, u), problem.x0_samples[:, : problem.d])[-1]) == 1.0

    # The first recorded iterate with 100% training accuracy, found after the solve: every 10th, then back.
    first_full = next((i for i in range(0, len(records), 10) if separates(i)), None)
    if first_full is None and records and separates(len(records) - 1):
        first_full = len(records) - 1
    if first_full is not None:
        first_full = next(i for i in range(max(0, first_full - 9), first_full + 1) if separates(i))
        first_full = {"seconds": records[first_full][0], "phase": records[first_full][1]}
    from turnpike.reduced import ReducedSpace

    rs = ReducedSpace(problem, STEPS, "rk4")
    _, gradient = rs._value_and_gradient(sol.u.reshape(-1), rs.parameters(T))
    held_out = problem.flow(sol, test_points)[-1] @ problem.output
    return {"success": sol.success, "status": sol.status, "cost": sol.cost, "total_seconds": sol.stats["total_seconds"],
            "build_seconds": sol.stats["build_seconds"], "presolve": sol.stats.get("presolve"),
            "ipopt_iterations": sol.stats["iterations"], "gradient_norm": float(np.abs(gradient).max()),
            "second_order": sol.stats.get("second_order"), "gradient": sol.stats.get("gradient"),
            "train_accuracy": float(problem.accuracy(sol.x[-1])),
            "test_accuracy": float(np.mean(np.sign(held_out) == test_labels)), "to_full_accuracy": first_full,
            "u": sol.u.tolist()}


def _with_controls(sol, u):
    """``sol`` with other controls (for flowing points through an intermediate network)."""
    import dataclasses

    return dataclasses.replace(sol, u=np.asarray(u))


def job_torch(spec: dict) -> dict:
    import torch
    from baseline_torch import TorchNeuralODE, initial_controls, train

    torch.set_num_threads(1)
    problem, _, _ = chessboard_problem(spec["activation"], WIDTH, spec["points"])
    model = TorchNeuralODE(problem, T, STEPS)
    check, _ = model.cost_at(np.asarray(spec["toolbox_u"]))
    target = 1.01 * spec["toolbox_cost"]
    reached = {"accuracy": None, "cost": None}
    best = {"cost": np.inf}

    def monitor(seconds, U):
        J, parts = model.cost_at(U)
        best["cost"] = min(best["cost"], J)
        if reached["accuracy"] is None and parts["accuracy"] == 1.0:
            reached["accuracy"] = seconds
        if reached["cost"] is None and J <= target:
            reached["cost"] = seconds
        return all(v is not None for v in reached.values())

    u0 = initial_controls(STEPS, problem.nu, seed=0)
    out = train(model, u0, method=spec["method"], target=None, budget_seconds=spec["budget"], lr=1e-2,
                batch=spec.get("batch"), iterations_per_step=5, monitor=monitor)
    out["cost"] = min(out["cost"], best["cost"])  # the lowest full-batch cost seen
    return {**out, "to_full_accuracy": reached["accuracy"], "to_cost_within_1pct": reached["cost"],
            "cost_at_toolbox_controls": check, "toolbox_cost": spec["toolbox_cost"]}


def job_width(spec: dict) -> dict:
    """Build, one gradient, one Hessian-vector product, torch forward + backward, at one width."""
    import torch
    from baseline_torch import TorchNeuralODE, initial_controls

    from turnpike.ensemble import EnsembleObjective
    from turnpike.reduced import ReducedSpace

    torch.set_num_threads(1)
    problem, _, _ = chessboard_problem("tanh", spec["width"], n_train=spec["points"])
    start = time.perf_counter()
    with CompilerMemory() as build_memory:
        rs = ReducedSpace(problem, STEPS, "rk4")
    build = time.perf_counter() - start
    p = rs.parameters(T)
    u = initial_controls(STEPS, problem.nu, seed=0)
    v = np.random.default_rng(1).standard_normal(u.shape)
    gradient = _median_seconds(lambda: rs.ensemble_cost(u, p))
    start = time.perf_counter()
    with CompilerMemory() as product_memory:
        rs.hessian_vector(u, p, v)
    product_build = time.perf_counter() - start
    product = _median_seconds(lambda: rs.hessian_vector(u, p, v))
    out = {"width": spec["width"], "nu": problem.nu, "build_seconds": build, "gradient_seconds": gradient,
           "gradient_method": rs.gradient_method, "hessian_vector_build_seconds": product_build,
           "hessian_vector_seconds": product, "hessian_vector_method": rs.hessian_vector_method,
           "build_compiler_peak_mb": build_memory.peak_mb,
           "hessian_vector_compiler_peak_mb": product_memory.peak_mb}
    start = time.perf_counter()
    objective = EnsembleObjective(problem, STEPS, "rk4")
    out["matrix_build_seconds"] = time.perf_counter() - start
    y = problem.data_values
    out["matrix_gradient_seconds"] = _median_seconds(lambda: objective.value_and_gradient(u, y, p[0]))
    out["matrix_hessian_vector_seconds"] = _median_seconds(lambda: objective.hessian_vector(u, y, p[0], v))
    model = TorchNeuralODE(problem, T, STEPS)
    U = torch.tensor(u, dtype=torch.float64, requires_grad=True)

    def forward_backward():
        U.grad = None
        model.cost(U)[0].backward()

    out["torch_forward_backward_seconds"] = _median_seconds(forward_backward)
    return out


JOBS = {"toolbox": job_toolbox, "torch": job_torch, "width": job_width}


def run_job(kind: str, spec: dict, timeout: float) -> dict:
    """``kind`` in a fresh process (one thread), its result and its peak memory."""
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps(spec))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TURNPIKE_THREADS": "1"}
        if spec.get("fresh_cache"):
            env["TURNPIKE_CACHE"] = str(Path(tmp) / "cache")
        try:
            subprocess.run([sys.executable, __file__, "--job", kind, str(spec_path), str(result_path)], env=env,
                           timeout=timeout, check=True)
        except (subprocess.TimeoutExpired, subprocess.CalledProcessError) as exc:
            return {"failed": str(exc)}
        return json.loads(result_path.read_text())


def _main_job(kind: str, spec_path: str, result_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    out = JOBS[kind](spec)
    out["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(result_path).write_text(json.dumps(out, default=float))


def _seconds(value) -> str:
    return "—" if value is None else f"{value:.1f} s"


def chessboard_part(activations: list[str], presolves: list[str], budget: float, limit: float,
                    points: int) -> list[dict]:
    rows = []
    for activation in activations:
        print(f"\nchessboard, {activation}: {points} training points, width {WIDTH}, {STEPS} RK4 steps, T = {T:g}",
              flush=True)
        row, tools = {"activation": activation}, []
        for presolve in presolves:
            name = f"toolbox, presolve={presolve}"
            tool = run_job("toolbox", {"activation": activation, "time_limit": limit, "points": points,
                                       "presolve": presolve}, timeout=3 * limit + 300)
            row[name] = {k: v for k, v in tool.items() if k != "u"}
            if "failed" in tool:
                print(f"  {name} failed: {tool['failed']}")
                continue
            tools.append(tool)
            order = tool.get("second_order") or {}
            full = tool["to_full_accuracy"]
            print(f"  {name}: 100% train accuracy {_seconds(full and full['seconds'])}"
                  f"{' (' + full['phase'] + ')' if full else ''}; certificate: success={tool['success']} "
                  f"({tool['status']}) at {tool['total_seconds']:.1f} s, cost {tool['cost']:.8g}, "
                  f"|grad J|inf {tool['gradient_norm']:.1e}, verdict {order.get('verdict')}, "
                  f"test accuracy {tool['test_accuracy']:.3f}, peak {tool['peak_memory_mb']:.0f} MB", flush=True)
        if not tools:
            rows.append(row)
            continue
        tool = min(tools, key=lambda t: t["cost"])  # torch's target: the lowest of the toolbox's costs
        for name, method, batch in (("adam-150", "adam", 150), ("adam-full", "adam", None), ("lbfgs", "lbfgs", None)):
            spec = {"activation": activation, "method": method, "batch": batch, "budget": budget,
                    "toolbox_cost": tool["cost"], "toolbox_u": tool["u"], "points": points}
            # The budget counts training time only: the full cost and accuracy checked after every epoch or step call
            # come on top (with softplus and full-batch Adam, a check after every iteration: past budget + 120 s).
            out = run_job("torch", spec, timeout=3 * budget + 300)
            row[name] = out
            if "failed" in out:
                print(f"  {name:9s} failed: {out['failed']}")
                continue
            print(f"  {name:9s} 100% train accuracy {_seconds(out['to_full_accuracy'])}, cost within 1% "
                  f"{_seconds(out['to_cost_within_1pct'])} ({out['stop']} after {out['seconds']:.1f} s, "
                  f"{out['iterations']} iterations, best cost {out['cost']:.8g}; torch cost at the toolbox's "
                  f"controls {out['cost_at_toolbox_controls']:.10g}), peak {out['peak_memory_mb']:.0f} MB", flush=True)
        rows.append(row)
    return rows


def sweep_part(points: int, widths: list[int]) -> list[dict]:
    print(f"\nwidth sweep: N = {points}, {STEPS} RK4 steps, tanh, one core (medians of 5)", flush=True)
    print(f"  {'width':>5} {'nu':>5} {'build':>8} {'cc MB':>6} {'Hv 1st':>7} {'cc MB':>6} {'grad':>8} {'Hv':>8} "
          f"{'torch f+b':>9} {'grad/torch':>10} {'Hv/2 grad':>9} {'MX grad':>8} {'MX Hv':>8}  Hv by", flush=True)
    rows = []
    for width in widths:
        out = run_job("width", {"width": width, "points": points, "fresh_cache": True}, timeout=1800)
        rows.append(out)
        if "failed" in out:
            print(f"  {width:5d} failed: {out['failed']}")
            continue
        torch_fb = out["torch_forward_backward_seconds"]
        megabytes = [f"{m:6.0f}" if m is not None else f"{'-':>6}" for m in (
            out["build_compiler_peak_mb"], out["hessian_vector_compiler_peak_mb"])]
        print(f"  {width:5d} {out['nu']:5d} {out['build_seconds']:7.1f}s {megabytes[0]} "
              f"{out['hessian_vector_build_seconds']:6.1f}s {megabytes[1]} {out['gradient_seconds'] * 1e3:6.1f}ms "
              f"{out['hessian_vector_seconds'] * 1e3:6.1f}ms {torch_fb * 1e3:7.1f}ms "
              f"{out['gradient_seconds'] / torch_fb:10.2f} "
              f"{out['hessian_vector_seconds'] / (2 * out['gradient_seconds']):9.2f} "
              f"{out['matrix_gradient_seconds'] * 1e3:6.1f}ms {out['matrix_hessian_vector_seconds'] * 1e3:6.1f}ms  "
              f"{out['hessian_vector_method']}", flush=True)
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--job":
        _main_job(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="chessboard,sweep", help="parts to run: chessboard, sweep")
    parser.add_argument("--activations", default="relu,softplus")
    parser.add_argument("--presolves", default="auto,adam", help="the toolbox's presolve choices, one row each")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds for each torch run")
    parser.add_argument("--toolbox-limit", type=float, default=600.0,
                        help="the toolbox's time_limit (the whole solve)")
    parser.add_argument("--train-points", type=int, default=2397, help="chessboard training points (of 2997)")
    parser.add_argument("--sweep-points", type=int, default=1000)
    parser.add_argument("--widths", default="16,50,100,200")
    parser.add_argument("--out", default=str(HERE / "results" / "width"))
    args = parser.parse_args()
    parts = set(args.only.split(","))
    results = {"command": " ".join(sys.argv), "commit": _commit()}
    if "chessboard" in parts:
        results["chessboard"] = chessboard_part(args.activations.split(","), args.presolves.split(","), args.budget,
                                                args.toolbox_limit, args.train_points)
    if "sweep" in parts:
        results["sweep"] = sweep_part(args.sweep_points, [int(w) for w in args.widths.split(",")])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(results, indent=1, default=float))
    print(f"\nsaved {args.out}.json")


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=HERE).stdout.strip()
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
