"""The command line: a tiny train/evaluate/search run, resuming, and one-line errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from absl import flags
from sklearn.datasets import load_digits

from tfcontrast import cli

pytestmark = pytest.mark.tf_only(reason="the CLI trains from tf.data and exports SavedModels")


@pytest.fixture
def digits_npz(tmp_path):
    digits = load_digits()
    path = tmp_path / "digits.npz"
    np.savez(
        path, x=(digits.images[:300] / 16.0).astype("float32")[..., None], y=digits.target[:300]
    )
    return str(path)


def parse(*args):
    """Parses flags in-process (absl keeps them global), resetting earlier values."""
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["tfcontrast", *args])


def test_train_evaluate_search_on_a_tiny_run(tmp_path, digits_npz, capsys):
    run_dir = str(tmp_path / "run")
    parse(
        f"--data={digits_npz}",
        f"--run_dir={run_dir}",
        "--epochs=2",
        "--batch_size=64",
        "--export=false",
        "--verbose=0",
    )
    metrics = cli.main(["tfcontrast", "train"])
    for name in (
        "config.json",
        "metrics.json",
        "history.csv",
        "model.keras",
        "plots/training_curves.png",
        "plots/projection.png",
    ):
        assert os.path.exists(os.path.join(run_dir, name)), name
    with open(os.path.join(run_dir, "metrics.json")) as f:
        saved = json.load(f)
    assert saved["epochs"] == 2
    for row in ("model", "raw_pixels"):
        assert 0.0 <= metrics[row]["10_labels_1nn_accuracy"] <= 1.0
    out = capsys.readouterr().out
    assert "raw pixels" in out and "10_labels_1nn_accuracy" in out

    evaluation = cli.main(["tfcontrast", "evaluate"])
    assert 0.0 <= evaluation["10_labels_1nn_accuracy"] <= 1.0

    parse(f"--run_dir={run_dir}", "--query=0,3", "--k=4")
    result = cli.main(["tfcontrast", "search"])
    assert result.indices.shape == (2, 4)

    export_dir = tmp_path / "exports"
    parse(f"--run_dir={run_dir}", f"--export_dir={export_dir}", "--name=tiny")
    exported = cli.main(["tfcontrast", "export"])
    assert exported["saved_model"]["passed"] and exported["tflite"]["passed"]
    assert (export_dir / "tiny" / "1" / "saved_model.pb").exists()
    assert (export_dir / "tiny.tflite").exists()

    # Running the same command again resumes: nothing is retrained beyond `epochs`.
    parse(
        f"--data={digits_npz}",
        f"--run_dir={run_dir}",
        "--epochs=2",
        "--batch_size=64",
        "--export=false",
        "--verbose=0",
    )
    cli.main(["tfcontrast", "train"])
    with open(os.path.join(run_dir, "history.csv")) as f:
        assert len(f.read().strip().splitlines()) == 1 + 2  # header + two epochs, once


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data=/no/such/folder"], "--data"),
        (["--algorithm=nope"], "--algorithm"),
        (["--backbone=nope"], "--backbone"),
        (["--strategy=tpu", "--mixed_precision=mixed_float16"], "contradict"),
    ],
)
def test_bad_input_is_a_usage_error(tmp_path, args, message):
    parse(f"--run_dir={tmp_path / 'run'}", "--epochs=1", "--export=false", *args)
    with pytest.raises(ValueError, match=message):
        cli.main(["tfcontrast", "train"])


def test_resuming_with_other_flags_is_refused(tmp_path, digits_npz):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"algorithm": "byol"}))
    parse(f"--data={digits_npz}", f"--run_dir={run_dir}", "--export=false")
    with pytest.raises(ValueError, match="other settings"):
        cli.main(["tfcontrast", "train"])


def test_console_errors_are_one_line_without_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfcontrast",
            "train",
            "--data=/no/such/folder",
            f"--run_dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("tfcontrast:")]
    assert errors == ["tfcontrast: error: --data: no such file or folder: '/no/such/folder'."]
    assert "Traceback" not in result.stderr
