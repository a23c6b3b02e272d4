"""``turnpike train DATA``: a neural ODE trained on a data file, certified, evaluated on held-out points, exported.

Registered in the ``turnpike.commands`` entry-point group (see :mod:`turnpike.cli`). The data file is read by
:func:`problems.datasets.load` (CSV or ``.npz``); a seeded share of the points (``--test-fraction``) is held out,
the rest trains a :class:`~problems.neural_ode.NeuralODEClassification` by :func:`turnpike.solve` (or the best of
``--starts`` by :func:`turnpike.multistart`). Features are used as given; ``--standardise`` rescales them to mean 0
and standard deviation 1 over the training points, says so, and records the shift and scale in ``model.json``,
so that the exported network takes raw features.

Written to ``--out``: ``solution.npz`` (:class:`turnpike.Solution`), ``model.json`` (the architecture, the
output map, the standardisation, the accuracies and the certificate) and ``weights.npz``
(:func:`turnpike.export.save`), ``layers.png`` (samples through the layers; decision regions for d = 2),
``depth.png`` (error, accuracy and ``|u(t)|`` over depth), and with ``--export torch`` ``model.pt``, the state
dict of :class:`turnpike.export.NeuralODEModule` (load it with :func:`turnpike.export.load_torch`).

Exit codes as for ``turnpike solve``: 0 certified, 1 not converged (the files are written and say so), 2 a bad
file or argument (one line), 3 converged with a warning.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

import turnpike as tp
from turnpike import export
from turnpike.errors import InputError, check_positive
from turnpike.sweeps.arguments import writable_directory

from .datasets import load
from .learning_figures import plot_depth, plot_layers
from .neural_ode import ACTIVATIONS, COSTS, FIELDS, LOSSES, NeuralODEClassification, class_labels

__all__ = ["register", "run", "split"]


def register(subparsers) -> None:
    """Add ``train`` to the ``turnpike`` command's subparsers."""
    p = subparsers.add_parser("train", help="train a neural ODE on a data file (CSV or .npz), certify, export")
    p.add_argument("data", type=Path, help="CSV (features, then a label column; a header allowed) or .npz "
                                           "(arrays 'points' and 'labels')")
    p.add_argument("--field", choices=FIELDS, default="inner", help="the layer field (default inner)")
    p.add_argument("--activation", choices=tuple(ACTIVATIONS), default="tanh", help="σ (default tanh)")
    p.add_argument("--hidden", type=int, help="bottleneck width (field bottleneck)")
    p.add_argument("--augment", type=int, help="zero coordinates appended to the features (default 0; K - d "
                                               "for K classes in d < K)")
    p.add_argument("--cost", choices=COSTS, default="turnpike", help="the cost (default turnpike: (B))")
    p.add_argument("--loss", choices=LOSSES, help="default: squared for two classes, cross-entropy for more")
    p.add_argument("--weight", type=float, default=1e-2, help="λ of the control term (default 1e-2)")
    p.add_argument("--l1-bound", type=float, help="M of cost sparse")
    p.add_argument("--T", type=float, default=5.0, help="horizon, the depth (default 5)")
    p.add_argument("--steps", type=int, default=20, help="layers (default 20)")
    p.add_argument("--method", choices=tp.INTEGRATORS, default="rk4", help="integrator per layer (default rk4)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of points held out (default 0.2)")
    p.add_argument("--standardise", action="store_true",
                   help="rescale features to mean 0, deviation 1 over the training points (recorded in model.json)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and of the initial weights")
    p.add_argument("--guess-scale", type=float, default=0.1, help="scale of the random initial weights")
    p.add_argument("--starts", type=int, default=1, metavar="K", help="the best of K seeded starts (default 1)")
    p.add_argument("--export", choices=["torch"], help="also write model.pt, a PyTorch state dict")
    p.add_argument("--out", type=Path, default=Path("out/train"), help="output directory (default out/train)")
    p.set_defaults(run=run)


def split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` of a seeded random split of n points, ``round(fraction n)`` held out."""
    if not 0 <= fraction < 1:
        raise InputError(f"--test-fraction must be in [0, 1), got {fraction!r}")
    order = np.random.default_rng(seed).permutation(n)
    held = int(round(fraction * n))
    return np.sort(order[held:]), np.sort(order[:held])


def run(args: argparse.Namespace) -> int:
    if args.export == "torch" and importlib.util.find_spec("torch") is None:
        raise InputError("--export torch needs PyTorch: pip install -e '.[torch]' (the CPU build is enough)")
    points, raw = load(args.data)
    classes, labels = class_labels(raw, len(raw))
    check_positive("--steps", args.steps, integer=True)
    check_positive("--T", args.T)
    if args.starts < 1:
        raise InputError(f"--starts must be >= 1, got {args.starts}")
    train, test = split(len(points), args.test_fraction, args.seed)
    missing = sorted(set(np.unique(labels)) - set(np.unique(labels[train])))
    if missing:
        raise InputError(f"the training split has no point of class(es) {missing[:5]}: lower --test-fraction or "
                         "change --seed")
    out = writable_directory(args.out, "--out")
    shift, scale = np.zeros(points.shape[1]), np.ones(points.shape[1])
    if args.standardise:
        shift, scale = points[train].mean(axis=0), points[train].std(axis=0)
        scale[scale == 0] = 1.0
        print("standardised the features: (x - mean) / std over the training points (recorded in model.json)")
    x = (points - shift) / scale
    problem = NeuralODEClassification(
        x[train], labels[train], classes=classes, field=args.field, activation=args.activation, hidden=args.hidden,
        augment=args.augment, cost=args.cost, loss=args.loss or ("squared" if classes == 2 else "cross-entropy"),
        weight=args.weight, l1_bound=args.l1_bound, name=args.data.stem)
    print(f"training on {len(train)} points ({classes} classes, d = {problem.d}, D = {problem.D}), {len(test)} held "
          f"out: {args.field} field, {args.activation}, {problem.nu} weights per layer, {args.steps} layers, "
          f"T = {args.T:g} ({args.method}) ...", flush=True)
    options = {"method": args.method, "seed": args.seed, "guess_scale": args.guess_scale}
    if args.starts > 1:
        sol = tp.multistart(problem, args.T, args.steps, starts=args.starts, progress=sys.stderr.isatty(), **options)
    else:
        sol = tp.solve(problem, args.T, args.steps, progress=sys.stderr.isatty(), **options)
    net = problem.network(sol)
    test_points = x[test]
    accuracy = {"training": float(problem.accuracy(sol.x[-1], sol.u)),
                "held_out": float(net.accuracy(test_points, labels[test])) if len(test) else None}
    certificate = {"success": sol.success, "status": sol.status, "cost": sol.cost,
                   "iterations": sol.stats.get("iterations"), "seconds": sol.stats.get("total_seconds")}
    model = net.model(input_shift=shift, input_scale=scale)
    files = [sol.save(out / "solution.npz")]
    files.append(export.save(model, out, accuracy=accuracy, certificate=certificate, data=str(args.data),
                             held_out=test, problem=problem.name) / "model.json")
    files.append(out / "weights.npz")
    held = (test_points, labels[test]) if len(test) else None
    if problem.D >= 2:
        plot_layers(problem, sol, out / "layers.png", test=held)
        files.append(out / "layers.png")
    plot_depth(problem, sol, out / "depth.png", test=held)
    files.append(out / "depth.png")
    if args.export == "torch":
        files.append(export.save_torch(model, out / "model.pt"))
    held_text = f"{accuracy['held_out']:.1%}" if accuracy["held_out"] is not None else "none held out"
    print(f"{sol.message}; training accuracy {accuracy['training']:.1%}, held-out accuracy {held_text}")
    print("wrote " + ", ".join(str(f) for f in files))
    for warning in sol.warnings:
        print(f"turnpike: warning: {warning}", file=sys.stderr)
    return 1 if not sol.success else 3 if sol.warnings else 0
