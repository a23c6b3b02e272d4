"""Phase diagram: probability that two tokens are within 1e-2 rad, over (t, β), SA on the circle.

Run:  python examples/attention_phase_diagram.py --out out/attention/phase
Writes phase.png and phase.json.

Run time: about 33 s on a 2-core machine (measured on 2026-12-03 with the default arguments,
while a test run shared the machine).
"""

import argparse
import json
from pathlib import Path

import numpy as np

import turnpike.attention as ta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/attention/phase")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--d", type=int, default=2)
    parser.add_argument("--runs", type=int, default=64)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    betas = np.geomspace(0.25, 16, 13)
    t = np.linspace(0, 30, 61)
    diag = ta.phase_diagram(betas, t, n=args.n, d=args.d, runs=args.runs, tol=1e-2, dt=0.05, seed=0)
    ta.plot_phase_diagram(diag, out / "phase.png")
    (out / "phase.json").write_text(json.dumps(diag.summary(), indent=2))
    last = dict(zip(np.round(betas, 3).tolist(), np.round(diag.probability[:, -1], 3).tolist(), strict=True))
    print("P(within 1e-2) at t = 30:", last)


if __name__ == "__main__":
    main()
