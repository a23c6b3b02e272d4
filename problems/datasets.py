"""Seeded synthetic datasets for classification, generated on the spot (no downloads).

Every generator returns ``(points, labels)``: points ``(N, d)`` float, labels ``(N,)`` in {-1, +1} for two
classes, integers 0..K-1 for :func:`rings` with K >= 3 classes.
"""

from __future__ import annotations

import numpy as np

from turnpike.errors import InputError, check_positive

__all__ = ["DATASETS", "chessboard", "concentric_spheres", "load", "rings", "spirals", "two_moons", "xor"]


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


def two_moons(n: int = 40, noise: float = 0.05, seed: int | None = 0):
    """Two interleaved half circles in d = 2 (label +1 upper, -1 lower), ``N(0, noise²)`` jitter."""
    n = check_positive("n", n, integer=True)
    rng = np.random.default_rng(seed)
    n1, n2 = n - n // 2, n // 2
    a1, a2 = np.linspace(0, np.pi, n1), np.linspace(0, np.pi, n2)
    upper = np.column_stack([np.cos(a1), np.sin(a1)])
    lower = np.column_stack([1 - np.cos(a2), 0.5 - np.sin(a2)])
    points = np.vstack([upper, lower]) + noise * rng.standard_normal((n, 2))
    return points, np.concatenate([np.ones(n1), -np.ones(n2)])


def xor(n: int = 40, d: int = 2, noise: float = 0.0, seed: int | None = 0):
    """Chequerboard: uniform points in ``[-1, 1]^d``, label the sign of the product of the coordinates."""
    n = check_positive("n", n, integer=True)
    d = check_positive("d", d, integer=True)
    rng = np.random.default_rng(seed)
    points = rng.uniform(-1, 1, (n, d))
    labels = np.where(np.prod(points, axis=1) >= 0, 1.0, -1.0)
    return points + noise * rng.standard_normal((n, d)), labels


def spirals(n: int = 40, turns: float = 1.0, noise: float = 0.0, seed: int | None = 0):
    """Two interleaved spirals in d = 2 (the second is the first turned by π), ``turns`` turns each."""
    n = check_positive("n", n, integer=True)
    rng = np.random.default_rng(seed)
    n1, n2 = n - n // 2, n // 2
    blocks = []
    for size, phase in ((n1, 0.0), (n2, np.pi)):
        s = np.linspace(0.15, 1.0, size)
        angle = 2 * np.pi * turns * s + phase
        blocks.append(np.column_stack([s * np.cos(angle), s * np.sin(angle)]))
    points = np.vstack(blocks) + noise * rng.standard_normal((n, 2))
    return points, np.concatenate([np.ones(n1), -np.ones(n2)])


def chessboard(n: int = 2997, squares: int = 3, gap: float = 0.09, extent: float = 0.9, noise: float = 0.0,
               seed: int | None = 0):
    """A ``squares × squares`` chessboard in ``[-extent, extent]²`` with gaps between the squares.

    The square is cut into ``squares²`` cells of side ``2 extent / squares``; each cell holds points
    uniform in the cell shrunk by ``gap / 2`` on every side (so neighbouring squares are ``gap`` apart),
    with label ``+1`` on the cells ``(i + j)`` even and ``-1`` on the others. The ``n`` points are shared
    out as evenly as possible (the first ``n mod squares²`` cells get one more). ``noise`` adds
    ``N(0, noise²)`` to each coordinate. The defaults are the set-up of the seed papers' authors' trainer:
    3 × 3 squares in ``[-0.9, 0.9]²``, gaps 0.09, 333 points per square (80% of them, 2397, for training).
    """
    n = check_positive("n", n, integer=True)
    squares = check_positive("squares", squares, integer=True)
    side = 2 * extent / squares
    if not 0 <= gap < side:
        raise InputError(f"gap must be in [0, {side:g}) (the side of a square), got {gap!r}")
    if extent <= 0:
        raise InputError(f"extent must be > 0, got {extent!r}")
    rng = np.random.default_rng(seed)
    cells = squares * squares
    counts = np.full(cells, n // cells) + (np.arange(cells) < n % cells)
    blocks, labels = [], []
    for cell, count in enumerate(counts):
        i, j = divmod(cell, squares)
        low = -extent + side * np.array([j, i]) + gap / 2
        blocks.append(low + (side - gap) * rng.uniform(size=(count, 2)))
        labels.append(np.full(count, 1.0 if (i + j) % 2 == 0 else -1.0))
    points = np.vstack(blocks) + noise * rng.standard_normal((n, 2))
    return points, np.concatenate(labels)


def rings(n: int = 60, classes: int = 3, noise: float = 0.0, seed: int | None = 0):
    """``n`` points on ``classes`` concentric circles of radii 1, 2, ..., K in d = 2; the points of circle k
    (label k - 1, integers 0..K-1) evenly spaced in angle with a seeded random phase, ``N(0, noise²)`` jitter.
    No linear map separates them: the K-class analogue of the two circles."""
    n = check_positive("n", n, integer=True)
    classes = check_positive("classes", classes, integer=True)
    if classes < 2 or n < classes:
        raise InputError(f"rings needs classes >= 2 and n >= classes (a point per class), got n={n}, "
                         f"classes={classes}")
    rng = np.random.default_rng(seed)
    sizes = np.full(classes, n // classes) + (np.arange(classes) < n % classes)
    blocks, labels = [], []
    for k, size in enumerate(sizes):
        angle = rng.uniform(0, 2 * np.pi) + np.linspace(0, 2 * np.pi, size, endpoint=False)
        blocks.append((k + 1) * np.column_stack([np.cos(angle), np.sin(angle)]))
        labels.append(np.full(size, k))
    return np.vstack(blocks) + noise * rng.standard_normal((n, 2)), np.concatenate(labels)


DATASETS = {"circles": concentric_spheres, "moons": two_moons, "xor": xor, "spirals": spirals,
            "chessboard": chessboard, "rings": rings}


def load(path) -> tuple[np.ndarray, np.ndarray]:
    """``(points, labels)`` from a data file: a CSV (one point per line: its features, then its label; a first
    line none of whose cells is a number is a header; blank lines are skipped) or an ``.npz`` holding arrays
    ``points`` (N, d) and ``labels`` (N,). Nothing is rescaled. The labels are returned as read:
    :func:`problems.neural_ode.class_labels` checks them (±1, 0/1, or 0..K-1).

    Raises:
        InputError: one line naming the file and what is wrong in it: missing or unreadable, ragged rows,
            a cell that is not a number (with its line and column), a value that is not finite, no data,
            fewer than two columns, a missing array in an ``.npz``.
    """
    import csv
    from pathlib import Path

    path = Path(path)
    where = str(path)
    if path.suffix == ".npz":
        try:
            with np.load(path) as data:
                missing = [key for key in ("points", "labels") if key not in data.files]
                if missing:
                    raise InputError(f"{where}: no array {missing[0]!r} (it has {', '.join(data.files) or 'none'}); "
                                     "an .npz needs 'points' (N, d) and 'labels' (N,)")
                points, labels = np.asarray(data["points"], dtype=float), np.asarray(data["labels"], dtype=float)
        except (OSError, ValueError) as exc:
            raise InputError(f"{where}: cannot read it as .npz ({exc})") from exc
        if points.ndim != 2 or labels.shape not in ((len(points),), (len(points), 1)):
            raise InputError(f"{where}: points must be (N, d) and labels (N,), got {points.shape} and {labels.shape}")
        labels = labels.reshape(-1)
    else:
        try:
            with open(path, newline="") as fh:
                rows = [(n, row) for n, row in enumerate(csv.reader(fh), start=1) if any(c.strip() for c in row)]
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise InputError(f"{where}: cannot read it as CSV ({getattr(exc, 'strerror', None) or exc})") from exc
        if rows and not any(_is_number(c) for c in rows[0][1]):
            rows = rows[1:]  # a header line: no cell is a number
        if not rows:
            raise InputError(f"{where}: no data lines")
        width = len(rows[0][1])
        if width < 2:
            raise InputError(f"{where}: line {rows[0][0]} has {width} column; each line needs features, then a label")
        values = np.empty((len(rows), width))
        for i, (line, row) in enumerate(rows):
            if len(row) != width:
                raise InputError(f"{where}: line {line} has {len(row)} columns, line {rows[0][0]} has {width} "
                                 "(ragged rows)")
            for j, cell in enumerate(row):
                if not _is_number(cell):
                    raise InputError(f"{where}: line {line}, column {j + 1}: {cell.strip()!r} is not a number")
                values[i, j] = float(cell)
        points, labels = values[:, :-1], values[:, -1]
    bad = np.argwhere(~np.isfinite(np.column_stack([points, labels])))
    if bad.size:
        row, col = bad[0]
        raise InputError(f"{where}: point {row + 1}, column {col + 1} is not finite "
                         f"({np.column_stack([points, labels])[row, col]!r})")
    if len(points) == 0:
        raise InputError(f"{where}: no data")
    return points, labels


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
