"""The two compiled ensemble gradient loops, and which one ``ensemble_gradient`` picks.

Run:  python benchmarks/bench_gradient.py           (one thread: TURNPIKE_THREADS=1 is set here)

:func:`turnpike.compiled.ensemble_gradient` computes J and ∇_u J of an ensemble by the discrete adjoint
in one of two ways (see its docstring): the stage's reverse mode in the backward pass (``stored=False``,
each transcendental evaluated twice) or the stage's Jacobians kept from the forward pass
(``stored=True``, once, with more arithmetic). With ``stored=None`` it compares an instruction count in
which a transcendental weighs 100 arithmetic operations. This script times both loops on the two-circles
data with the inner tanh field (cost (B), RK4, T = 5, seeded controls) for d = 2, 3, 4, 8 and prints
the milliseconds per call (median of 5 runs of `reps` calls), their ratio, the rule's pick, and whether
the pick was the faster loop.
"""

from __future__ import annotations

import os

os.environ.setdefault("TURNPIKE_THREADS", "1")

import time  # noqa: E402

import numpy as np  # noqa: E402

from problems.neural_ode import NeuralODEClassification  # noqa: E402
from turnpike.compiled import ensemble_gradient  # noqa: E402
from turnpike.reduced import recursion_stage  # noqa: E402
from turnpike.transcription import stage_function  # noqa: E402

CASES = [(40, 100, 2), (40, 100, 3), (40, 100, 4), (40, 100, 8), (1000, 200, 2)]  # (N, steps, d)


def milliseconds(fn, args, reps: int) -> float:
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(reps):
            fn(*args)
        runs.append((time.perf_counter() - start) / reps * 1e3)
    return float(np.median(runs))


def main() -> None:
    print(f"{'N':>5} {'steps':>5} {'d':>2} {'nx':>3} {'nu':>4} {'reverse ms':>11} {'stored ms':>10} "
          f"{'stored/reverse':>15}  picks    faster picked")
    for N, steps, d in CASES:
        prob = NeuralODEClassification.example(n_points=N, d=d)
        stage, terminal, _ = recursion_stage(prob, stage_function(prob, "rk4"))
        loops = {stored: ensemble_gradient(stage, terminal, stored) for stored in (False, True, None)}
        if any(loop is None for loop in loops.values()):
            raise SystemExit("no C compiler: nothing to compare (the interpreted path is used)")
        u = 0.5 * np.random.default_rng(0).standard_normal((steps, prob.nu))
        args = (prob.x0_samples, u, prob.data_values.reshape(N, prob.ny), 5.0 / steps)
        reps = max(3, int(20_000 / (N * steps)))
        t = {stored: milliseconds(loops[stored], args, reps) for stored in (False, True)}
        pick = loops[None].stored
        print(f"{N:>5} {steps:>5} {d:>2} {prob.nx:>3} {prob.nu:>4} {t[False]:>11.3f} {t[True]:>10.3f} "
              f"{t[True] / t[False]:>15.2f}  {'stored ' if pick else 'reverse'}  "
              f"{'yes' if t[pick] <= t[not pick] else 'no'}", flush=True)


if __name__ == "__main__":
    main()
