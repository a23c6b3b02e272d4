"""Speed of the self-attention dynamics: RK4 steps per second, vectorised against a plain per-token loop.

Run:  python benchmarks/bench_attention.py            (add --quick for a fast smoke run)

Workloads (SA, Q = K = V = I, β = 1, tokens on the sphere, one RK4 step = 4 field evaluations + projection):
  A. n = 1024 tokens, d = 64, batch 1;
  B. n = 32 tokens, d = 128, batch 2048 prompts.
Vectorised: :class:`turnpike.attention.SelfAttention` (numpy, batched matmul, per-row max-shift).
Baselines, measured in the same run on the same data:
  * "plain loop": the textbook per-token loop in pure Python (for each prompt, for each token i: the
    logits <x_i, x_j> over j, the max-shifted softmax, the weighted sum and the projection, all in
    Python lists and floats); its cost per token is the same for every token, so it is timed on the
    first ``k`` tokens of the first prompt and scaled by ``batch * n / k``;
  * "numpy per-token loop": a Python loop over prompts and tokens, each token's update by numpy
    vector operations (a much stronger baseline).
The vectorised step is checked against both on the timed tokens (agreement to 1e-12).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

import turnpike.attention as ta


def field_python(X: list[list[float]], i: int, beta: float) -> list[float]:
    """SA field of token i of one prompt, pure Python."""
    xi = X[i]
    logits = [beta * sum(a * b for a, b in zip(xi, xj, strict=True)) for xj in X]
    m = max(logits)
    w = [math.exp(v - m) for v in logits]
    z = sum(w)
    d = len(xi)
    a = [sum(w[j] * X[j][c] for j in range(len(X))) / z for c in range(d)]
    dot = sum(p * q for p, q in zip(a, xi, strict=True))
    return [a[c] - dot * xi[c] for c in range(d)]


def field_numpy_loop(x: np.ndarray, beta: float) -> np.ndarray:
    out = np.empty_like(x)
    for b in range(x.shape[0]):
        X = x[b]
        for i in range(X.shape[0]):
            logit = beta * (X @ X[i])
            w = np.exp(logit - logit.max())
            a = (w / w.sum()) @ X
            out[b, i] = a - (a @ X[i]) * X[i]
    return out


def timed(fn, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows = []
    for label, batch, n, d in [("A", 1, 1024, 64), ("B", 2048, 32, 128)]:
        x = ta.random_sphere((batch, n), d, seed=0)
        model = ta.SelfAttention(d, beta=1.0)
        h = 0.01
        t = np.array([0.0, h])

        step_vec = timed(lambda model=model, x=x, t=t, h=h: ta.simulate(model, x, t, dt=h), 2 if args.quick else 3)
        field_vec = model.field(0.0, x)
        # pure Python, first k tokens of the first prompt, scaled to a full RK4 step (4 field evaluations)
        k = 2 if args.quick else 8
        X = x[0].tolist()
        start = time.perf_counter()
        py = [field_python(X, i, 1.0) for i in range(k)]
        per_token = (time.perf_counter() - start) / k
        assert np.max(np.abs(np.array(py) - field_vec[0, :k])) < 1e-12
        step_py = 4 * per_token * batch * n
        # numpy per-token loop on a share of the batch, scaled
        share = max(1, batch // (64 if args.quick else 16))
        sub = x[:share]
        loop_time = timed(lambda sub=sub: field_numpy_loop(sub, 1.0), 1) * batch / share
        assert np.max(np.abs(field_numpy_loop(sub[:1], 1.0) - field_vec[:1])) < 1e-12
        step_np = 4 * loop_time
        rows.append((label, n, d, batch, 1 / step_vec, 1 / step_py, 1 / step_np,
                     step_py / step_vec, step_np / step_vec))
    head = f"{'':2} {'n':>5} {'d':>4} {'batch':>5}  {'vectorised':>11}  {'plain loop':>11}  {'numpy loop':>11}  " \
           f"{'× plain':>8}  {'× numpy':>8}"
    print("RK4 steps per second (one step advances every token of every prompt)")
    print(head)
    for r in rows:
        print(f"{r[0]:2} {r[1]:5d} {r[2]:4d} {r[3]:5d}  {r[4]:11.3g}  {r[5]:11.3g}  {r[6]:11.3g}  "
              f"{r[7]:8.0f}  {r[8]:8.1f}")
    worst = min(r[7] for r in rows)
    print(f"vectorised / plain per-token loop: at least {worst:.0f}x ({'meets' if worst >= 100 else 'MISSES'} 100x)")


if __name__ == "__main__":
    main()
