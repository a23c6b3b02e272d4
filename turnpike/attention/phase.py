"""Phase diagram: the probability that two tokens are within a tolerance, over time and β.

For each β, ``runs`` seeded uniform prompts of n tokens on S^{d-1} (one batch) are integrated with
RK4 (step ``dt``, projected) under SA or USA with Q = K = V = I, and at each output time the
probability is estimated by :func:`~turnpike.attention.diagnostics.proximity_probability`: the
fraction of token pairs within ``tol`` radians, over all pairs and prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, check_finite
from .diagnostics import proximity_probability
from .dynamics import SelfAttention, random_sphere
from .integrate import simulate

__all__ = ["PhaseDiagram", "phase_diagram"]


@dataclass(frozen=True)
class PhaseDiagram:
    """``probability[i, k]``: two tokens within ``tol`` at time ``t[k]`` for ``betas[i]``."""

    betas: np.ndarray
    t: np.ndarray
    probability: np.ndarray
    n: int
    d: int
    runs: int
    tol: float
    kind: str

    def summary(self) -> dict:
        return {"betas": self.betas.tolist(), "t": self.t.tolist(), "probability": self.probability.tolist(),
                "n": self.n, "d": self.d, "runs": self.runs, "tol": self.tol, "kind": self.kind}


def phase_diagram(
    betas: Sequence[float],
    t,
    *,
    n: int = 32,
    d: int = 2,
    runs: int = 64,
    tol: float = 1e-2,
    kind: str = "sa",
    dt: float = 0.05,
    seed=0,
) -> PhaseDiagram:
    """Estimate the phase diagram (module docstring); the same seeded starts for every β."""
    betas = check_finite("betas", betas)
    if betas.ndim != 1 or betas.size == 0:
        raise InputError(f"betas must be a non-empty 1-d sequence, got {betas!r}")
    t = check_finite("t", t)
    x0 = random_sphere((runs, n), d, seed=seed)
    prob = np.empty((betas.size, t.size))
    for i, beta in enumerate(betas):
        traj = simulate(SelfAttention(d, beta=beta, kind=kind), x0, t, dt=dt)
        prob[i] = [proximity_probability(x, tol) for x in traj.x]
    return PhaseDiagram(betas, t, prob, n, d, runs, float(tol), kind)
