"""Seeded synthetic datasets for classification, generated on the spot (no downloads).

Every generator returns ``(points, labels)``: points ``(N, d)`` float, labels ``(N,)`` in {-1, +1}.
"""

from __future__ import annotations

import numpy as np

from turnpike.errors import InputError, check_positive

__all__ = ["concentric_spheres"]


def concentric_spheres(n: int = 40, d: int = 2, radii=(1.0, 2.0), noise: float = 0.0, seed: int | None = 0):
    """``n`` points, half on the sphere of radius ``radii[0]`` (label +1), half on ``radii[1]`` (label -1).

    In ``d = 2`` the points of each circle are evenly spaced in angle (with a seeded random phase);
    in higher dimension they are uniform on the sphere. ``noise`` adds ``N(0, noise²)`` to each
    coordinate. ``d = 2`` is the two-circles problem of neural-ODE papers.
    """
    n = check_positive("n", n, integer=True)
    d = check_positive("d", d, integer=True)
    if n < 2:
        raise InputError(f"n must be >= 2 (one point per class), got {n}")
    if len(radii) != 2 or min(radii) <= 0:
        raise InputError(f"radii must be two positive numbers, got {radii!r}")
    rng = np.random.default_rng(seed)
    sizes = (n - n // 2, n // 2)
    blocks = []
    for size, radius in zip(sizes, radii, strict=True):
        if d == 2:
            angle = rng.uniform(0, 2 * np.pi) + np.linspace(0, 2 * np.pi, size, endpoint=False)
            unit = np.column_stack([np.cos(angle), np.sin(angle)])
        else:
            g = rng.standard_normal((size, d))
            unit = g / np.linalg.norm(g, axis=1, keepdims=True)
        blocks.append(radius * unit)
    points = np.vstack(blocks) + noise * rng.standard_normal((n, d))
    labels = np.concatenate([np.ones(sizes[0]), -np.ones(sizes[1])])
    return points, labels
