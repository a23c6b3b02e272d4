"""``turnpike train``: bad data files are one-line errors with exit 2; a training run writes what it says, and its
reported held-out accuracy is that of the exported network run on the raw held-out points."""

import json

import numpy as np
import pytest

from problems.datasets import rings
from problems.train import split
from turnpike import export
from turnpike.cli import main


def _csv(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, message", [
    ("x,y,label\n0,0,1\n1,1\n", r"line 3 has 2 columns, line 2 has 3 \(ragged rows\)"),
    ("0,0,1\n1,abc,0\n", r"line 2, column 2: 'abc' is not a number"),
    ("0,0,1\n1,1,1\n2,2,1\n", "labels have one class only"),
    ("0,0,1\n1,nan,0\n", r"point 2, column 2 is not finite"),
    ("0,0,0\n1,1,1\n2,2,-2\n", r"labels must be -1/\+1, 0/1, or the integers 0..K-1, got values \[-2.0\]"),
    ("0,0,0\n1,1,1\n2,2,4\n", r"class\(es\) \[2, 3\] have no point"),
    ("0,0,0\n1,1,0.5\n", r"got values \[0.5\]"),
    ("a,b\n", "no data lines"),
    ("0\n1\n", "has 1 column; each line needs features, then a label"),
])
def test_bad_files_are_one_line_errors(tmp_path, capsys, text, message):
    code = main(["train", _csv(tmp_path / "data.csv", text), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("turnpike: error: ")
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "out" / "model.json").exists()


def test_bad_npz_and_missing_files(tmp_path, capsys):
    np.savez(tmp_path / "data.npz", points=np.zeros((4, 2)), targets=np.arange(4))
    assert main(["train", str(tmp_path / "data.npz")]) == 2
    assert "no array 'labels' (it has points, targets)" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "absent.csv")]) == 2
    assert "absent.csv: cannot read it as CSV" in capsys.readouterr().err
    np.savez(tmp_path / "ok.npz", points=np.zeros((4, 2)), labels=[0, 1, 0, 1])
    assert main(["train", str(tmp_path / "ok.npz"), "--test-fraction", "1.5"]) == 2
    assert "--test-fraction must be in [0, 1), got 1.5" in capsys.readouterr().err


def test_the_split_is_seeded_and_disjoint():
    train, test = split(50, 0.2, seed=3)
    assert len(test) == 10 and not set(train) & set(test) and len(train) + len(test) == 50
    np.testing.assert_array_equal(split(50, 0.2, seed=3)[1], test)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Three rings (30 points, shifted and scaled so that the standardisation matters), trained from a CSV."""
    tmp = tmp_path_factory.mktemp("train")
    points, labels = rings(30, 3, noise=0.03, seed=2)
    points = 10.0 + 3.0 * points
    lines = ["feature 1,feature 2,class"] + [f"{a:.17g},{b:.17g},{k}" for (a, b), k in zip(points, labels, strict=True)]
    data = _csv(tmp / "rings.csv", "\n".join(lines) + "\n")
    out = tmp / "out"
    code = main(["train", data, "--standardise", "--steps", "20", "--T", "5", "--guess-scale", "1", "--out",
                 str(out), "--export", "torch", "--seed", "1"])
    return code, out, points, labels


def test_training_writes_the_model_and_its_accuracies(trained):
    code, out, points, labels = trained
    assert code in (0, 3)  # converged (3: with a warning)
    for name in ("solution.npz", "model.json", "weights.npz", "layers.png", "depth.png", "model.pt"):
        assert (out / name).stat().st_size > 0, name
    info = json.loads((out / "model.json").read_text())
    assert info["certificate"]["success"] is True
    assert info["accuracy"]["training"] == 1.0
    # the exported network (NumPy, applying the recorded standardisation) on the raw held-out points
    held = np.array(info["held_out"])
    network = export.to_numpy(export.load(out))
    assert info["accuracy"]["held_out"] == pytest.approx(np.mean(network.predict(points[held]) == labels[held]))
    assert np.allclose(info["input_shift"], np.delete(points, held, axis=0).mean(axis=0))


def test_the_torch_file_is_the_same_network(trained):
    torch = pytest.importorskip("torch")
    _, out, points, _ = trained
    module = export.load_torch(out)
    with torch.no_grad():
        scores = module(torch.tensor(points)).numpy()
    np.testing.assert_allclose(scores, export.to_numpy(export.load(out))(points), rtol=0, atol=1e-12)
