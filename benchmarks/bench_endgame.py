"""The endgame of a wide network: why the chessboard network is not certified in five minutes, and the
Hessian-vector product's library compiled during L-BFGS-B.

Run (one core: ``OMP_NUM_THREADS=1``, ``TURNPIKE_THREADS=1``)::

    python benchmarks/bench_endgame.py                      # both parts (about 8 minutes)
    python benchmarks/bench_endgame.py --only curvature      # part 1
    python benchmarks/bench_endgame.py --only background    # part 2
    python benchmarks/bench_endgame.py --only handover      # part 3 (about an hour)
    python benchmarks/bench_endgame.py --only rule          # part 4 (about 10 minutes)
    python benchmarks/bench_endgame.py --only preconditioner  # part 5 (about 3 minutes)

Part 1, ``curvature``: the chessboard of ``bench_width.py`` (2397 training points, bottleneck of width 50, 16
RK4 steps, T = 5, cost (B)) with tanh. L-BFGS-B (the presolve's settings: memory 20, no relative-decrease
stop) from ``turnpike.solve``'s seeded start for ``--iterations`` iterations, printing ``‖∇J‖∞`` every 500;
then, at its end point, conjugate gradients on ``H d = -∇J`` (exact Hessian-vector products), plain and
preconditioned by L-BFGS-B's own inverse-Hessian approximation (its last 20 pairs), until a direction of
non-positive curvature ``pᵀHp <= 0`` or 300 products: the products spent and the quadratic model
``gᵀd + dᵀHd/2`` every 50.

Part 2, ``background``: width 200, N = 1000 of the same data, a fresh compilation cache (a temporary
directory): the build of ``ReducedSpace``, then ``--background-iterations`` L-BFGS-B iterations inside
``ReducedSpace.hessian_vector_compiling`` (the product's library compiling meanwhile), the wait at the block's
end, and the first Hessian-vector product after it.

Part 3, ``handover``: when L-BFGS-B should hand over to Newton-CG. The tanh chessboard of part 1, one L-BFGS-B run
from the same start for the largest of ``--handovers`` iterations, its iterate kept at each of them; from each,
``turnpike.solve``'s Newton-CG phase (``turnpike.solve._newton_cg``: gtol 1e-10, at most 250 products a step) for
at most ``--newton-limit`` seconds. Printed: the iterations, the seconds and ``‖∇J‖∞`` at the handover, Newton-CG's
steps, products, seconds and end, and the total time to ``‖∇J‖∞ <= 1e-8``, the certificate's tolerance (the point
where the Newton phase first reached it; "-" if it did not). From each iterate Newton-CG runs once per
``--preconditioners`` (``gauss-newton``: the Gauss–Newton blocks of ``ReducedSpace.gauss_newton``, as ``turnpike.solve``
does; ``none``: plain conjugate gradients).

Part 4, ``rule``: ``turnpike.solve`` on chessboards of ``--rule-points`` points (width 16, tanh, 16 RK4 steps,
T = 5) from the random starts ``--rule-seeds``, with the presolve's hand-over rule (``turnpike.presolve.HANDOVER_*``:
L-BFGS-B until J settles, its relative decrease over a window of iterations below each of ``--rule-decreases``) and
with the one before it (L-BFGS-B for at most 3000 iterations, until it stalls), one after the other in this process.
Printed per solve:
L-BFGS-B's iterations, why it ended and its seconds, Newton-CG's steps, products and seconds, the solve's seconds
without the build, J and the second-order verdict.

Part 5, ``preconditioner``: ``turnpike.solve`` on the chessboards of part 4, its Newton-CG preconditioned by the
Gauss–Newton blocks and not, one after the other in this process (the same L-BFGS-B phase, then two Newton-CG
phases). Printed per solve: Newton-CG's steps, products, preconditioners built and their seconds, its seconds, the
solve's seconds without the build, J and the verdict.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TURNPIKE_THREADS", "1")

import numpy as np  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_width import STEPS, T, chessboard_problem  # noqa: E402

import turnpike  # noqa: E402
from turnpike import presolve  # noqa: E402
from turnpike.reduced import ReducedSpace  # noqa: E402
from turnpike.solve import _newton_cg, _random_controls  # noqa: E402

solve_module = sys.modules["turnpike.solve"]  # the module (turnpike.solve is the function); part 5 sets its Newton-CG


def conjugate_gradients(product, g: np.ndarray, precondition, max_products: int = 300) -> None:
    """CG (preconditioned by ``precondition``) on ``H d = -g`` until ``pᵀHp <= 0`` or ``max_products``; prints."""
    d, r = np.zeros_like(g), g.copy()
    z = precondition(r)
    p, rz = -z, float(r @ z)
    start = time.perf_counter()
    for k in range(1, max_products + 1):
        Hp = product(p)
        curvature = float(p @ Hp)
        if curvature <= 0:
            print(f"    non-positive curvature pᵀHp = {curvature:.2e} at product {k} "
                  f"({time.perf_counter() - start:.0f} s)")
            return
        alpha = rz / curvature
        d, r = d + alpha * p, r + alpha * Hp
        z = precondition(r)
        rz_new = float(r @ z)
        p, rz = -z + (rz_new / rz) * p, rz_new
        if k % 50 == 0:
            model = float(g @ d + 0.5 * d @ product(d))
            print(f"    product {k}: |d| {np.linalg.norm(d):.3e}, model {model:.3e}, "
                  f"residual/|g| {np.linalg.norm(r) / np.linalg.norm(g):.2e}", flush=True)
    print(f"    no non-positive curvature in {max_products} products")


def curvature_part(iterations: int) -> None:
    problem, _, _ = chessboard_problem("tanh", 50)
    rs = ReducedSpace(problem, STEPS, "rk4")
    p, shape = rs.parameters(T), (STEPS, rs.n_v)
    print(f"chessboard, tanh, width 50, {problem.n_samples} points: L-BFGS-B for {iterations} iterations", flush=True)
    count, start = [0], time.perf_counter()

    def watch(intermediate_result):  # scipy passes its OptimizeResult to a parameter of this name
        count[0] += 1
        if count[0] % 500 == 0:
            g = rs._value_and_gradient(np.array(intermediate_result.x), p)[1]
            print(f"  iteration {count[0]}: J {intermediate_result.fun:.10f}, |grad J|inf {np.abs(g).max():.2e}, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)

    u0 = _random_controls(problem, STEPS, 0, 0.1).reshape(-1)
    res = minimize(lambda v: rs._value_and_gradient(v, p), u0, jac=True, method="L-BFGS-B", callback=watch,
                   options={"maxiter": iterations, "ftol": 0.0, "gtol": 1e-10, "maxcor": 20})
    g = rs._value_and_gradient(res.x, p)[1]

    def product(v):
        return rs.hessian_vector(res.x.reshape(shape), p, v.reshape(shape)).reshape(-1)

    for name, precondition in (("plain", lambda r: r), ("preconditioned by L-BFGS-B's pairs", res.hess_inv.matvec)):
        print(f"  conjugate gradients on H d = -grad J, {name}:")
        conjugate_gradients(product, g, precondition)


def background_part(iterations: int) -> None:
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TURNPIKE_CACHE"] = cache
        problem, _, _ = chessboard_problem("tanh", 200, 1000)
        start = time.perf_counter()
        rs = ReducedSpace(problem, STEPS, "rk4")
        built = time.perf_counter()
        print(f"width 200, N = 1000, fresh cache: build {built - start:.1f} s", flush=True)
        u0 = _random_controls(problem, STEPS, 0, 0.1).reshape(-1)
        p = rs.parameters(T)
        with rs.hessian_vector_compiling():
            written = time.perf_counter()
            minimize(lambda v: rs._value_and_gradient(v, p), u0, jac=True, method="L-BFGS-B",
                     options={"maxiter": iterations, "ftol": 0.0, "gtol": 1e-10, "maxcor": 20})
            descended = time.perf_counter()
        waited = time.perf_counter()
        rs.hessian_vector(u0.reshape(STEPS, -1), p, np.ones((STEPS, rs.n_v)))
        first = time.perf_counter()
        print(f"  product's code written {written - built:.2f} s; {iterations} L-BFGS-B iterations "
              f"{descended - written:.1f} s; wait at the block's end {waited - descended:.2f} s; first product "
              f"{first - waited:.2f} s ({rs.hessian_vector_method})")


def handover_part(handovers: list[int], newton_limit: float, preconditioners: list[str]) -> None:
    problem, _, _ = chessboard_problem("tanh", 50)
    rs = ReducedSpace(problem, STEPS, "rk4")
    p, shape = rs.parameters(T), (STEPS, rs.n_v)
    kept, count, start = {}, [0], time.perf_counter()

    def keep(intermediate_result):  # scipy passes its OptimizeResult to a parameter of this name
        count[0] += 1
        if count[0] in handovers:
            kept[count[0]] = (np.array(intermediate_result.x), time.perf_counter() - start)

    u0 = _random_controls(problem, STEPS, 0, 0.1).reshape(-1)
    res = minimize(lambda v: rs._value_and_gradient(v, p), u0, jac=True, method="L-BFGS-B", callback=keep,
                   options={"maxiter": max(handovers), "ftol": 0.0, "gtol": 1e-10, "maxcor": 20})
    print(f"chessboard, tanh, width 50, {problem.n_samples} points: L-BFGS-B ({res.nit} iterations: {res.message}), "
          f"then Newton-CG (at most {newton_limit:g} s) from its iterate after")
    print(f"{'L-BFGS-B':>9} {'seconds':>8} {'|grad|inf':>10}  {'M':>12} {'Newton-CG':>9} {'products':>8} "
          f"{'seconds':>8} {'|grad|inf':>10} {'J':>14}  {'to 1e-8':>8}")
    for k, preconditioner in ((k, m) for k in sorted(kept) for m in preconditioners):
        x, seconds = kept[k]
        g = np.abs(rs._value_and_gradient(x, p)[1]).max()
        reached, newton_start = [None], time.perf_counter()

        def first_below(_u, _J, gradient_norm, reached=reached, newton_start=newton_start):
            if reached[0] is None and gradient_norm <= 1e-8:
                reached[0] = time.perf_counter() - newton_start

        def out_of_time(newton_start=newton_start):
            return "time limit" if time.perf_counter() - newton_start > newton_limit else None

        newton = _newton_cg(rs, x.reshape(shape), T, False, first_below, out_of_time,
                            precondition=preconditioner == "gauss-newton")
        total = f"{seconds + reached[0]:.0f} s" if reached[0] is not None else "-"
        print(f"{k:9d} {seconds:7.0f}s {g:10.2e}  {preconditioner:>12} {newton.iterations:9d} {newton.products:8d} "
              f"{newton.seconds:7.0f}s {newton.gradient_norm:10.2e} {newton.cost:14.10f}  {total:>8}", flush=True)


def rule_part(sizes: list[int], seeds: list[int], decreases: list[float]) -> None:
    from problems.datasets import chessboard
    from problems.neural_ode import NeuralODEClassification

    default = (presolve.HANDOVER_ITERATIONS, presolve.HANDOVER_WINDOW, presolve.HANDOVER_DECREASE)
    rules = {f"J settles {d:g}": (presolve.HANDOVER_ITERATIONS, presolve.HANDOVER_WINDOW, d) for d in decreases}
    rules["3000 at most"] = (3000, None, 0.0)
    print(f"chessboard, tanh, width 16, 16 RK4 steps, T = 5: the hand-over rule (at most {default[0]} iterations, "
          f"window {default[1]}) with relative decreases {decreases}, and the 3000-iteration cap")
    print(f"{'N':>5} {'seed':>4} {'rule':>16}  {'L-BFGS-B':>8} {'ended by':>13} {'s':>6}  {'Newton':>6} "
          f"{'products':>8} {'s':>6}  {'solve s':>7} {'J':>13}  verdict")
    for n in sizes:
        points, labels = chessboard(n, seed=0)
        for seed in seeds:
            for name, rule in rules.items():
                presolve.HANDOVER_ITERATIONS, presolve.HANDOVER_WINDOW, presolve.HANDOVER_DECREASE = rule
                problem = NeuralODEClassification(points, labels, field="bottleneck", hidden=16, augment=1,
                                                  activation="tanh")
                sol = turnpike.solve(problem, T=T, steps=STEPS, seed=seed)
                lbfgs, newton = sol.stats["presolve"]["lbfgs"], sol.stats["presolve"].get("newton", {})
                ended = "J settled" if lbfgs["message"].startswith("relative decrease over") else (
                    "iteration cap" if "ITERATIONS" in lbfgs["message"] else "stalled")
                print(f"{n:5d} {seed:4d} {name:>16}  {lbfgs['iterations']:8d} {ended:>13} {lbfgs['seconds']:6.1f}  "
                      f"{newton.get('iterations', 0):6d} {newton.get('products', 0):8d} "
                      f"{newton.get('seconds', 0):6.1f}  "
                      f"{sol.stats['total_seconds'] - sol.stats['build_seconds']:7.1f} {sol.cost:13.10f}  "
                      f"{sol.stats['second_order'].get('verdict')}{'' if sol.success else ' (not converged)'}",
                      flush=True)
    presolve.HANDOVER_ITERATIONS, presolve.HANDOVER_WINDOW, presolve.HANDOVER_DECREASE = default


def preconditioner_part(sizes: list[int], seeds: list[int]) -> None:
    from problems.datasets import chessboard
    from problems.neural_ode import NeuralODEClassification

    newton_cg = solve_module._newton_cg
    print("chessboard, tanh, width 16, 16 RK4 steps, T = 5: Newton-CG preconditioned by the Gauss-Newton blocks "
          "and not")
    print(f"{'N':>5} {'seed':>4} {'M':>12}  {'Newton':>6} {'products':>8} {'built':>5} {'s':>5} {'Newton s':>8}  "
          f"{'solve s':>7} {'J':>13}  verdict")
    for n in sizes:
        points, labels = chessboard(n, seed=0)
        for seed in seeds:
            for name in ("gauss-newton", "none"):
                solve_module._newton_cg = functools.partial(newton_cg, precondition=name == "gauss-newton")
                problem = NeuralODEClassification(points, labels, field="bottleneck", hidden=16, augment=1,
                                                  activation="tanh")
                sol = turnpike.solve(problem, T=T, steps=STEPS, seed=seed)
                newton = sol.stats["presolve"].get("newton", {})
                print(f"{n:5d} {seed:4d} {name:>12}  {newton.get('iterations', 0):6d} {newton.get('products', 0):8d} "
                      f"{newton.get('preconditioners', 0):5d} {newton.get('preconditioner_seconds', 0):5.2f} "
                      f"{newton.get('seconds', 0):8.1f}  "
                      f"{sol.stats['total_seconds'] - sol.stats['build_seconds']:7.1f} {sol.cost:13.10f}  "
                      f"{sol.stats['second_order'].get('verdict')}{'' if sol.success else ' (not converged)'}",
                      flush=True)
    solve_module._newton_cg = newton_cg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="curvature,background",
                        help="parts: curvature, background, handover, rule, preconditioner")
    parser.add_argument("--iterations", type=int, default=3000, help="L-BFGS-B iterations of part 1")
    parser.add_argument("--background-iterations", type=int, default=250, help="L-BFGS-B iterations of part 2")
    parser.add_argument("--handovers", default="3000,4000,5000,6000,8000,10000",
                        help="part 3: L-BFGS-B iterations after which Newton-CG starts")
    parser.add_argument("--newton-limit", type=float, default=600, help="part 3: seconds of Newton-CG at most")
    parser.add_argument("--preconditioners", default="gauss-newton,none",
                        help="part 3: Newton-CG's preconditioners (gauss-newton, none)")
    parser.add_argument("--rule-points", default="200,600", help="parts 4 and 5: chessboard sizes")
    parser.add_argument("--rule-seeds", default="0,1,2", help="parts 4 and 5: random starts")
    parser.add_argument("--rule-decreases", default="1e-4,1e-5", help="part 4: the rule's relative decreases")
    args = parser.parse_args()
    parts = args.only.split(",")
    if "curvature" in parts:
        curvature_part(args.iterations)
    if "background" in parts:
        background_part(args.background_iterations)
    if "handover" in parts:
        handover_part([int(k) for k in args.handovers.split(",")], args.newton_limit, args.preconditioners.split(","))
    if "rule" in parts:
        rule_part([int(n) for n in args.rule_points.split(",")], [int(s) for s in args.rule_seeds.split(",")],
                  [float(d) for d in args.rule_decreases.split(",")])
    if "preconditioner" in parts:
        preconditioner_part([int(n) for n in args.rule_points.split(",")], [int(s) for s in args.rule_seeds.split(",")])


if __name__ == "__main__":
    main()
