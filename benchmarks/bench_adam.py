"""Does a minibatch Adam phase help the presolve? The measurements behind ``presolve="adam"`` not being the default.

Run (each job a fresh process on one thread; ``--jobs 2`` runs two at a time)::

    python benchmarks/bench_adam.py                     # both parts (about 25 minutes with --jobs 2)
    python benchmarks/bench_adam.py --only chessboard --seconds 20   # a quick look

Part ``chessboard``: the width-50 bottleneck on the 2397-point chessboard of ``bench_width.py`` (T = 5,
16 RK4 steps), for ReLU and softplus and the random starts ``--seeds``: L-BFGS-B on the reduced objective
(``turnpike.presolve.reduced_space_descent``, no stopping on the relative decrease) for ``--seconds``
seconds, from the random start and after 30 epochs of ``turnpike.presolve.minibatch_descent`` (batches
of 150, step 1e-2); the cost J at 10, 30, 60 and 120 s (Adam's time included) and at the end.

Part ``circles``: the two-circles workload of ``bench_scale.py`` at N = 1000 (200 steps, inner tanh
field, cost (B)): ``turnpike.solve`` with ``presolve="auto"`` and ``presolve="adam"`` from the random
starts ``--seeds``: certified or not, J, total seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

MARKS = (10.0, 30.0, 60.0, 120.0)


def job_chessboard(activation: str, seed: int, epochs: int, seconds: float) -> dict:
    import importlib

    from bench_width import STEPS, WIDTH, T, chessboard_problem

    from turnpike.presolve import minibatch_descent, reduced_space_descent
    from turnpike.reduced import ReducedSpace
    from turnpike.stopping import Stop

    problem, _, _ = chessboard_problem(activation, WIDTH)
    rs = ReducedSpace(problem, STEPS, "rk4")
    u = importlib.import_module("turnpike.solve")._random_controls(problem, STEPS, seed, 0.1)  # solve's start
    start = time.perf_counter()
    if epochs:
        u = minibatch_descent(rs, u, T, epochs=epochs, seed=seed).u
    adam_seconds = time.perf_counter() - start
    at = {}

    def watch(intermediate_result):
        elapsed = time.perf_counter() - start
        for mark in MARKS:
            if elapsed > mark and mark not in at:
                at[mark] = float(intermediate_result.fun)

    res = reduced_space_descent(rs, u, T, rel_decrease=0.0, callback=watch, stop=Stop(seconds, start=start))
    return {"activation": activation, "seed": seed, "epochs": epochs, "adam_seconds": adam_seconds,
            "lbfgs_iterations": res.iterations, "final": res.cost, "seconds": time.perf_counter() - start,
            "at": {str(k): v for k, v in at.items()}}


def job_circles(presolve: str, seed: int) -> dict:
    import turnpike as tp
    from problems.datasets import concentric_spheres
    from problems.neural_ode import NeuralODEClassification

    points, labels = concentric_spheres(1000, 2, radii=(1.0, 2.0), seed=0)
    problem = NeuralODEClassification(points, labels, field="inner", activation="tanh", cost="turnpike",
                                      weight=1e-2, alpha=1.0)
    sol = tp.solve(problem, T=5.0, steps=200, presolve=presolve, seed=seed)
    return {"presolve": presolve, "seed": seed, "success": sol.success, "cost": sol.cost,
            "seconds": sol.stats["total_seconds"], "phases": sol.stats["presolve"]["method"]}


JOBS = {"chessboard": job_chessboard, "circles": job_circles}


def run_job(kind: str, *args) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TURNPIKE_THREADS": "1"}
    out = subprocess.run([sys.executable, __file__, "--job", kind, json.dumps(args)], env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        return {"failed": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--job":
        print(json.dumps(JOBS[sys.argv[2]](*json.loads(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="chessboard,circles")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--seconds", type=float, default=150.0, help="L-BFGS-B budget of a chessboard run")
    parser.add_argument("--jobs", type=int, default=2, help="jobs at a time (one thread each)")
    parser.add_argument("--out", default=str(HERE / "results" / "adam"))
    args = parser.parse_args()
    parts, seeds = set(args.only.split(",")), [int(s) for s in args.seeds.split(",")]
    specs = []
    if "chessboard" in parts:
        specs += [("chessboard", a, s, e, args.seconds) for a in ("relu", "softplus") for s in seeds for e in (0, 30)]
    if "circles" in parts:
        specs += [("circles", p, s) for s in seeds for p in ("auto", "adam")]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda spec: {"kind": spec[0], **run_job(*spec)}, specs))
    for r in results:
        if "failed" in r:
            print(f"{r['kind']}: failed: {r['failed']}")
        elif r["kind"] == "chessboard":
            marks = "  ".join(f"{float(k):.0f}s {v:.4f}" for k, v in r["at"].items())
            print(f"chessboard {r['activation']:8s} seed {r['seed']} {'Adam 30 epochs + ' if r['epochs'] else ''}"
                  f"L-BFGS-B: J at {marks}; final {r['final']:.4f} after {r['lbfgs_iterations']} iterations, "
                  f"{r['seconds']:.0f} s")
        else:
            print(f"circles N = 1000 seed {r['seed']} presolve={r['presolve']:5s} certified {r['success']}, "
                  f"J = {r['cost']:.6f}, {r['seconds']:.1f} s ({r['phases']})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps({"command": " ".join(sys.argv), "results": results}, indent=1))
    print(f"saved {args.out}.json")


if __name__ == "__main__":
    main()
