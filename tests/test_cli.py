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

    assert "match threshold" in out and set(metrics["match"]) >= {"target_precision"}
    assert os.path.exists(os.path.join(run_dir, "index", "index.json"))

    parse(f"--run_dir={run_dir}", "--query=0,3", "--k=4")
    result = cli.main(["tfcontrast", "search"])
    assert result.indices.shape == (2, 4)
    if "threshold" in metrics["match"]:  # the saved index answers with its threshold
        assert "match " in capsys.readouterr().out
    # Issue 38: `index` without --data indexes the training images only, as `train` does.
    parse(f"--run_dir={run_dir}")
    assert len(cli.main(["tfcontrast", "index"])) == 210  # 70% of the 300 images
    assert "the run's training split of" in capsys.readouterr().out
    parse(f"--run_dir={run_dir}", "--query=0", "--k=0")
    with pytest.raises(cli.UsageError, match="--k: expected a number of neighbours >= 1"):
        cli.main(["tfcontrast", "search"])
    parse(f"--run_dir={run_dir}", "--query=0", "--k=100000")  # more than the index holds
    assert cli.main(["tfcontrast", "search"]).indices.shape == (1, 210)

    export_dir = tmp_path / "exports"
    parse(f"--run_dir={run_dir}", f"--export_dir={export_dir}", "--name=tiny")
    exported = cli.main(["tfcontrast", "export"])
    assert exported["saved_model"]["passed"] and exported["tflite"]["passed"]
    assert (export_dir / "tiny" / "1" / "saved_model.pb").exists()
    assert (export_dir / "tiny.tflite").exists()
    # Issue 38: a quantized export has its own file, the float32 one stays.
    float32 = (export_dir / "tiny.tflite").read_bytes()
    parse(
        f"--run_dir={run_dir}",
        f"--export_dir={export_dir}",
        "--name=tiny",
        "--quantization=dynamic",
    )
    quantized = cli.main(["tfcontrast", "export"])
    assert quantized["tflite"]["passed"] and (export_dir / "tiny_dynamic.tflite").exists()
    assert (export_dir / "tiny.tflite").read_bytes() == float32

    # Running the same command again resumes: nothing is retrained beyond `epochs`.
    parse(
        f"--data={digits_npz}",
        f"--run_dir={run_dir}",
        "--epochs=2",
        "--batch_size=64",
        "--export=false",
        "--verbose=0",
    )
    with open(os.path.join(run_dir, "metrics.json")) as f:
        before = f.read()
    capsys.readouterr()
    cli.main(["tfcontrast", "train"])
    with open(os.path.join(run_dir, "history.csv")) as f:
        assert len(f.read().strip().splitlines()) == 1 + 2  # header + two epochs, once
    # Issue 38: a finished run is a result: said, and nothing of it rewritten.
    assert "holds a finished run of 2 epochs; nothing was changed" in capsys.readouterr().out
    with open(os.path.join(run_dir, "metrics.json")) as f:
        assert f.read() == before


@pytest.fixture
def keras_layout_npz(tmp_path):
    """uint8 (N, H, W) digits in Keras' dataset layout, with a test split of its own."""
    digits = load_digits()
    x = (digits.images * 255 / 16).astype("uint8")
    path = tmp_path / "keras_layout.npz"
    np.savez(
        path,
        x_train=x[:200],
        y_train=digits.target[:200],
        x_test=x[200:260],
        y_test=digits.target[200:260],
    )
    return str(path)


def test_grayscale_arrays_in_keras_layout_train_on_their_own_test_split(
    tmp_path, keras_layout_npz, capsys
):
    run_dir = str(tmp_path / "run")
    parse(
        f"--data={keras_layout_npz}",
        f"--run_dir={run_dir}",
        "--epochs=1",
        "--batch_size=64",
        "--export=false",
        "--verbose=0",
    )
    metrics = cli.main(["tfcontrast", "train"])
    out = capsys.readouterr().out
    assert "200 training and 60 held-out images of shape (8, 8, 1)" in out
    assert "augmentation: glyphs" in out and "chosen because 1-channel images of 8x8" in out
    assert set(metrics["model"]) == {"1nn_accuracy", "knn20_accuracy", "10_labels_1nn_accuracy"}
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    assert config["recipe"]["algorithm"] == "vicreg" and config["epochs"] == 1


def test_colour_presets_train_on_grayscale(tmp_path, keras_layout_npz):
    # The crash of issue 19: CIFAR's colour jitter on 1-channel images.
    parse(
        f"--data={keras_layout_npz}",
        f"--run_dir={tmp_path / 'run'}",
        "--epochs=1",
        "--batch_size=64",
        "--export=false",
        "--verbose=0",
        "--augmentation=small_natural",
    )
    assert cli.main(["tfcontrast", "train"])["epochs"] == 1


def test_keras_application_backbone_from_its_weights_file(tmp_path, digits_npz, capsys):
    # The command line fine-tunes a keras.applications model from a local weights file:
    # frozen for the first epoch, then unfrozen.
    import keras

    weights = str(tmp_path / "mobilenet.weights.h5")
    keras.applications.MobileNetV3Small(
        include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg"
    ).save_weights(weights)
    parse(
        f"--data={digits_npz}",
        f"--run_dir={tmp_path / 'run'}",
        "--backbone=MobileNetV3Small",
        f"--weights={weights}",
        "--freeze_backbone",
        "--unfreeze_after=1",
        "--image_size=32",
        "--epochs=2",
        "--batch_size=64",
        "--export=false",
        "--verbose=0",
    )
    metrics = cli.main(["tfcontrast", "train"])
    out = capsys.readouterr().out
    assert "mobilenetv3small backbone" in out and "backbone frozen for 1 epochs" in out
    assert metrics["epochs"] == 2 and np.isfinite(metrics["final_loss"])


def test_lora_fine_tunes_the_adapters_only(tmp_path, digits_npz, capsys):
    # --lora_rank on a pretrained backbone: its kernels change only through the trained
    # low-rank updates (merged into the saved kernels); biases and BatchNorm stay as loaded.
    import keras

    weights = str(tmp_path / "mobilenet.weights.h5")
    pretrained = keras.applications.MobileNetV3Small(
        include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg"
    )
    pretrained.save_weights(weights)
    run_dir = tmp_path / "run"
    parse(
        f"--data={digits_npz}",
        f"--run_dir={run_dir}",
        "--backbone=MobileNetV3Small",
        f"--weights={weights}",
        "--lora_rank=2",
        "--image_size=32",
        "--epochs=1",
        "--batch_size=64",
        "--export=false",
        "--verbose=0",
    )
    cli.main(["tfcontrast", "train"])
    assert "LoRA rank 2:" in capsys.readouterr().out
    trained = keras.saving.load_model(run_dir / "model.keras").backbone
    inner = next(layer for layer in trained.layers if isinstance(layer, keras.Model))
    changed_kernels = 0
    for layer in (layer for layer in pretrained.layers if layer.weights):
        after = inner.get_layer(layer.name)
        if isinstance(layer, keras.layers.BatchNormalization):
            for name in ("gamma", "beta", "moving_mean", "moving_variance"):
                np.testing.assert_array_equal(
                    getattr(after, name).numpy(), getattr(layer, name).numpy()
                )
        elif isinstance(layer, keras.layers.Conv2D) and not isinstance(
            layer, keras.layers.DepthwiseConv2D
        ):
            assert after.lora_enabled, layer.name
            if layer.bias is not None:
                np.testing.assert_array_equal(after.bias.numpy(), layer.bias.numpy())
            changed_kernels += not np.array_equal(after.kernel.numpy(), layer.kernel.numpy())
    assert changed_kernels > 0  # the adapters trained


def test_kerashub_preset_backbone_trains_exports_and_reloads(tmp_path, digits_npz, capsys):
    # A KerasHub image backbone saved as a local preset (weights and image converter), as a
    # downloaded preset would be: trained with LoRA, exported, and reloaded by `evaluate`.
    keras_hub = pytest.importorskip("keras_hub")  # in the test extra: CI always runs this

    preset = str(tmp_path / "tiny_resnet")
    hub_backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        use_pre_activation=False,
        image_shape=(None, None, 3),
    )
    hub_backbone.save_to_preset(preset)
    keras_hub.layers.ResNetImageConverter(image_size=(16, 16), scale=1 / 255.0).save_to_preset(
        preset
    )
    run_dir = tmp_path / "run"
    parse(
        f"--data={digits_npz}",
        f"--run_dir={run_dir}",
        f"--backbone={preset}",
        "--lora_rank=2",
        "--epochs=1",
        "--batch_size=64",
        f"--export_dir={tmp_path / 'exports'}",
        "--name=hub",
        "--verbose=0",
    )
    metrics = cli.main(["tfcontrast", "train"])
    out = capsys.readouterr().out
    assert "kerashub_tiny_resnet backbone" in out and "LoRA rank 2:" in out
    assert metrics["export"]["saved_model"]["passed"] and metrics["export"]["tflite"]["passed"]
    evaluation = cli.main(["tfcontrast", "evaluate"])  # model.keras reloads with its layers
    assert evaluation["1nn_accuracy"] == pytest.approx(metrics["model"]["1nn_accuracy"], abs=1e-6)


def test_unlabelled_data_reports_no_accuracy(tmp_path, capsys):
    path = tmp_path / "unlabelled.npz"
    np.savez(path, x=(load_digits().images[:120] / 16.0).astype("float32"))
    parse(
        f"--data={path}",
        f"--run_dir={tmp_path / 'run'}",
        "--epochs=1",
        "--batch_size=64",
        "--export=false",
        "--verbose=0",
    )
    metrics = cli.main(["tfcontrast", "train"])
    assert "model" not in metrics and "raw_pixels" not in metrics
    assert "no labels: the embedding's accuracy cannot be measured" in capsys.readouterr().out


def _junk(tmp_path):
    path = tmp_path / "junk.weights.h5"
    path.write_bytes(b"not weights")
    return str(path)


def _unlabelled(tmp_path):
    path = tmp_path / "unlabelled.npz"
    np.savez(path, x=np.zeros((40, 8, 8), "uint8"))
    return str(path)


def _npz(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return f"--data={path}"


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda t: ["--data=/no/such/folder"], "--data: no such file"),
        (lambda t: ["--algorithm=nope"], "--algorithm"),
        (lambda t: ["--backbone=nope"], "--backbone"),
        (lambda t: ["--augmentation=sepia"], "--augmentation: .*unknown `augmentation` 'sepia'"),
        (lambda t: ["--width=0"], "--width: .*`width` must be >= 1"),
        (lambda t: ["--algorithm=byol", "--temperature=0.1"], "--temperature"),
        (lambda t: ["--epochs=0"], "--epochs"),
        (lambda t: ["--algorithm=metric", "--loss=quadruplet"], "--loss: .*'quadruplet'"),
        (lambda t: ["--algorithm=metric", "--miner=nope"], "--miner: .*'nope'"),
        (lambda t: ["--algorithm=metric", "--per_class=4"], "--classes_per_batch: .*both"),
        (lambda t: ["--classes_per_batch=4", "--per_class=4"], "--per_class: .*need labels"),
        (
            lambda t: ["--algorithm=metric", "--classes_per_batch=11", "--per_class=4"],
            "--classes_per_batch: .*hold 10 classes",
        ),
        (lambda t: ["--strategy=tpu", "--mixed_precision=mixed_float16"], "contradict"),
        (
            lambda t: ["--backbone=MobileNetV3Small"],  # the digits are 8x8
            "--backbone: backbone MobileNetV3Small on 8x8 images: .*at least 32x32.*image_size",
        ),
        (
            lambda t: ["--backbone=MobileNetV3Small", "--image_size=32", f"--weights={_junk(t)}"],
            "--weights: the weights file .* does not fit backbone MobileNetV3Small",
        ),
        (lambda t: ["--backbone=ResNet50", "--lora_rank=4"], "--lora_rank: .*pretrained"),
        (lambda t: ["--local_size=4"], "--local_size: .*needs `local_views`"),
        (
            lambda t: ["--algorithm=dino", "--local_views=2", "--local_scale=0.6,0.3"],
            "--local_scale: .*0 < min <= max <= 1",
        ),
        (
            lambda t: ["--algorithm=dino", "--local_views=2", "--local_size=12"],  # 8x8 digits
            "--local_size: .*larger than the images",
        ),
        (lambda t: ["--online_probe", f"--data={_unlabelled(t)}"], "--online_probe: .*labels"),
        (lambda t: [_npz(t, x=np.zeros((0, 8, 8), "uint8"))], "--data: .*`x` is empty"),
        (
            lambda t: [_npz(t, x=np.zeros((10, 8, 8), "uint8"), y=np.zeros(9, "int64"))],
            r"--data: .*`y` must have shape \(10,\)",
        ),
        (lambda t: [_npz(t, x=np.zeros((10, 8, 8, 2), "uint8"))], "1 \\(grayscale\\) or 3"),
        (lambda t: [_npz(t, x=np.zeros((10, 64), "uint8"))], r"--data: .*\(N, H, W\)"),
        (lambda t: [_npz(t, images=np.zeros((10, 8, 8), "uint8"))], "expected x \\(and y\\)"),
        (lambda t: ["--time_budget=-1"], "--time_budget: expected a positive number of minutes"),
        (lambda t: ["--projection_dim=0"], "--projection_dim: .*must be >= 1"),
        (lambda t: ["--algorithm=simclar"], "--algorithm: .*Did you mean 'simclr'\\?"),
        (lambda t: ["--augmentation=glyph"], "--augmentation: .*Did you mean 'glyphs'\\?"),
        (lambda t: ["--hidden_dim=-1"], "--hidden_dim: .*must be >= 1"),
        (lambda t: ["--seed=-1"], "--seed: expected an integer >= 0"),
        (lambda t: ["--max_examples=0"], "--max_examples: expected an integer >= 1"),
        (lambda t: ["--time_budget=2"], "--time_budget: .*contradicts `epochs` \\(1\\)"),
        (lambda t: ["--backbone=runs/nothing-here"], "--backbone: no such run directory"),
        (lambda t: [f"--backbone={t}"], "--backbone: .*directory without model.keras"),
        (
            lambda t: [f"--weights={_junk(t)}"],  # the 8x8 digits get no pretrained backbone
            "--weights: .*are for a pretrained backbone.*64 px",
        ),
    ],
)
def test_bad_input_is_a_usage_error(tmp_path, make_args, message):
    parse(f"--run_dir={tmp_path / 'run'}", "--epochs=1", "--export=false", *make_args(tmp_path))
    with pytest.raises(cli.UsageError, match=message):
        cli.main(["tfcontrast", "train"])
    assert not (tmp_path / "run" / "config.json").exists()  # the corrected command may run


def test_failed_export_keeps_the_run_and_says_so_in_one_line(
    tmp_path, digits_npz, monkeypatch, capsys
):
    # Issue 23, item 8: a parity failure at the end lost metrics.json and printed a traceback.
    from tfcontrast.export import ParityError

    class Report:
        def to_json(self):
            return json.dumps({"passed": False, "cosine_min": 0.5})

    def failing_export(model, sample, name):
        raise ParityError("tflite int8: cosine min 0.5 < 0.99.", Report())

    monkeypatch.setattr(cli, "_export", failing_export)
    run_dir = tmp_path / "run"
    parse(f"--data={digits_npz}", f"--run_dir={run_dir}", "--epochs=1", "--verbose=0")
    with pytest.raises(SystemExit) as exit_info:
        cli._main_with_errors(["tfcontrast", "train"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("tfcontrast: export failed: tflite int8") and "\n" not in err
    with open(run_dir / "metrics.json") as f:
        saved = json.load(f)
    assert saved["export"]["report"]["cosine_min"] == 0.5 and "model" in saved


def test_match_report_measures_the_threshold_on_the_other_half():
    from tfcontrast.retrieval import Index

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8))
    train_y = np.repeat(np.arange(4), 30)
    train = centres[train_y] + 0.6 * rng.normal(size=(120, 8))
    test_y = np.repeat(np.arange(4), 50)
    test = centres[test_y] + 0.9 * rng.normal(size=(200, 8))
    index = Index(metric="cosine").add(train, labels=train_y)
    report = cli.match_report(index, test, test_y, seed=3, target_precision=0.9)
    # Reference: the other half of the same permutation, nearest neighbour by cosine.
    check = np.random.default_rng(3).permutation(200)[100:]
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    similarity = unit(test[check]) @ unit(train).T
    nearest = similarity.argmax(1)
    accepted = similarity.max(1) >= report["threshold"]
    right = accepted & (train_y[nearest] == test_y[check])
    assert report["held_out_answered"] == pytest.approx(accepted.mean())
    assert report["held_out_precision"] == pytest.approx(right.sum() / accepted.sum())
    assert 0.0 < report["held_out_answered"] < 1.0
    assert "not_calibrated" in cli.match_report(index, train, train_y)  # nothing to reject


def test_verdict_warns_in_plain_words():
    pixels = {"1nn_accuracy": 0.95, "10_labels_1nn_accuracy": 0.80}
    worse = {"1nn_accuracy": 0.96, "10_labels_1nn_accuracy": 0.70}
    assert "worse than raw pixels on 10_labels_1nn_accuracy" in cli.verdict(
        {"model": worse, "raw_pixels": pixels}
    )
    barely = {"1nn_accuracy": 0.96, "10_labels_1nn_accuracy": 0.81}
    text = cli.verdict({"model": barely, "raw_pixels": pixels})
    assert "learned little" in text and "1.0 points better" in text and "5% of the pix" in text
    better = {"1nn_accuracy": 0.97, "10_labels_1nn_accuracy": 0.90}
    assert cli.verdict({"model": better, "raw_pixels": pixels}) is None
    # Photos (issue 35): 0.205 -> 0.278 removes 9% of the errors: little, however many points.
    photos = {"1nn_accuracy": 0.357, "10_labels_1nn_accuracy": 0.278}
    photo_pixels = {"1nn_accuracy": 0.311, "10_labels_1nn_accuracy": 0.205}
    metrics = {"model": photos, "raw_pixels": photo_pixels}
    assert "7.3 points better" in cli.verdict(metrics)
    # The loss: flat in its second half, or still falling; each says what to try.
    flat = [32.0, 20.0, 18.0, 16.2, 16.1, 16.0, 16.05, 16.0]
    assert "fell slowly in the second half" in cli.verdict(metrics, flat)
    assert "pretrained backbone" in cli.verdict(metrics, flat)
    falling = [32.0, 28.0, 25.0, 22.0, 19.0, 16.0]
    assert "still falling" in cli.verdict(metrics, falling)
    assert "--time_budget" in cli.verdict(metrics, falling)
    barely = [10.0, 9.9, 9.8, 9.9, 9.75]
    assert "barely moved (10 -> 9.75)" in cli.verdict(metrics, barely)


def test_resuming_with_other_flags_is_refused(tmp_path, digits_npz):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"algorithm": "byol"}))
    parse(f"--data={digits_npz}", f"--run_dir={run_dir}", "--export=false")
    with pytest.raises(ValueError, match="other settings") as error:
        cli.main(["tfcontrast", "train"])
    # Unset flags and settings the run lacks read "unset", not "None" (issue 38).
    assert "--algorithm=unset (run has 'byol')" in str(error.value)
    assert "--epochs" not in str(error.value) and "None" not in str(error.value)


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


def test_metric_loss_on_class_batches(tmp_path, digits_npz, capsys):
    parse(
        f"--data={digits_npz}",
        f"--run_dir={tmp_path / 'run'}",
        "--algorithm=metric",
        "--loss=triplet",
        "--miner=batch_hard",
        "--classes_per_batch=5",
        "--per_class=4",
        "--epochs=1",
        "--export=false",
        "--verbose=0",
    )
    metrics = cli.main(["tfcontrast", "train"])
    out = capsys.readouterr().out
    assert "epochs of batch 20 (5 classes x 4 images)" in out
    assert np.isfinite(metrics["final_loss"]) and "1nn_accuracy" in metrics["model"]


def test_epochs_of_a_chosen_length(tmp_path, digits_npz, capsys):
    # A large collection's epochs can be shorter than a pass: 2 epochs of 3 steps of 64.
    run_dir = tmp_path / "run"
    _tiny_train(digits_npz, run_dir, 2, "--steps_per_epoch=3")
    assert "2 epochs of 3 steps of batch 64" in capsys.readouterr().out
    assert _logged_epochs(run_dir) == [0, 1]
    with open(run_dir / "config.json") as f:
        assert json.load(f)["recipe"]["steps_per_epoch"] == 3


# -- help, logs and errors (issue 23) ----------------------------------------------------
def _help(*args):
    """`python -m tfcontrast ARGS` (the console script's path): its exit status, output and
    whether it imported TensorFlow."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tfcontrast", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    imported = [line.split("|")[-1].strip() for line in result.stderr.splitlines()]
    return result.returncode, result.stdout, "tensorflow" in imported


def test_help_lists_each_commands_flags_without_starting_tensorflow():
    # Issue 23: `tfcontrast train --help` exited 1 with "USAGE: tfcontrast [flags]" only.
    asks = {
        "overview": ["--help"],
        "train": ["train", "--help"],
        "evaluate": ["evaluate", "-h"],
        "export": ["export", "--help"],
        "search": ["--data", "digits", "search", "--help"],
    }
    out = {}
    for name, args in asks.items():
        status, out[name], tensorflow = _help(*args)
        assert status == 0 and not tensorflow, (name, status, tensorflow)
    for command in ("train", "evaluate", "export", "search"):
        assert f"\n  {command} " in out["overview"]
    train, evaluate, export, search = (out[c] for c in ("train", "evaluate", "export", "search"))
    assert "--epochs=INT" in train and "--quantization=STRING" in train
    assert "--[no]export" in train and "--query" not in train
    assert "--run_dir" in evaluate and "--epochs" not in evaluate
    assert "--quantization=STRING" in export and "--[no]export" not in export
    assert "--query=STRING" in search and "--k=INT" in search and "--epochs" not in search
    assert "(default: '0,1,2')" in search  # defaults as they are
    assert "\nExport:\n" in train and "\nSearch:\n" in search  # grouped by section


def test_flag_mistakes_are_one_line_with_status_2():
    result = subprocess.run(
        [sys.executable, "-m", "tfcontrast", "train", "--epoch=3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "tfcontrast: error: Unknown command line flag 'epoch'. Did you mean: epochs ?"
    ]


_START_UP_NOISE = (
    "oneDNN",
    "cudart_stub",
    "Could not find cuda drivers",
    "InitializeLog",
    "cpu_feature_guard",
    "PredictCost",
    "cuInit",
)


def test_tensorflow_start_up_lines_are_silenced(tmp_path, digits_npz):
    import re

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfcontrast",
            "train",
            f"--data={digits_npz}",
            f"--run_dir={tmp_path / 'run'}",
            "--epochs=1",
            "--batch_size=64",
            "--export=false",
            "--verbose=0",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "10_labels_1nn_accuracy" in result.stdout
    noise = [
        line
        for line in result.stderr.splitlines()
        if re.match(r"[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\]", line)
        or any(word in line for word in _START_UP_NOISE)
    ]
    assert noise == []


def test_log_levels_follow_verbosity_and_the_users_environment():
    from tfcontrast import _cli_logs

    assert [_cli_logs.min_log_level(v) for v in (None, 1, 0, -1, -2, -3)] == [3, 0, 0, 1, 2, 3]
    environ = {}
    assert _cli_logs.configure(None, environ) == 3 and environ == {"TF_CPP_MIN_LOG_LEVEL": "3"}
    environ = {"TF_CPP_MIN_LOG_LEVEL": "1"}  # set by the user: kept
    assert _cli_logs.configure(None, environ) == 1 and environ["TF_CPP_MIN_LOG_LEVEL"] == "1"
    assert _cli_logs.configure(0, {}) == 0
    text = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796238716.196662    5940 cudart_stub.cc:31] Could not find cuda drivers\n"
        "W0000 00:00:1796238716.2    5940 some.cc:1] a warning\n"
        "E0000 00:00:1796238716.3    5940 op_level_cost_estimator.cc:699] Error in PredictCost()\n"
        "a line of Python\n"
    )
    assert _cli_logs.filter_lines(text, 3) == "a line of Python\n"
    assert _cli_logs.filter_lines(text, 2).splitlines()[-2:] == [
        "E0000 00:00:1796238716.3    5940 op_level_cost_estimator.cc:699] Error in PredictCost()",
        "a line of Python",
    ]
    assert _cli_logs.filter_lines(text, 0) == text


def test_no_algorithm_is_named_in_the_command_line_code():
    # Adding a method is adding one file: the command line special-cases none (no
    # `if algorithm == ...`, no default or list of names of its own).
    import ast

    from tfcontrast.models import algorithms

    with open(cli.__file__) as f:
        strings = [
            node.value.lower()
            for node in ast.walk(ast.parse(f.read()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        ]
    named = {
        name
        for name in algorithms.names()
        for text in strings
        if text == name or f"algorithm={name}" in text or f"{name}-" in text
    }
    assert named == set()


class _Internal(ValueError):
    pass


@pytest.mark.parametrize("where", ["build", "fit"])
def test_errors_from_inside_keep_their_traceback_and_leave_no_config(
    tmp_path, digits_npz, monkeypatch, capsys, where
):
    # Issue 23, item 3: every ValueError from deep inside became "error: ..." with exit
    # status 2 and no traceback; item 9: a run failing before its first epoch left
    # config.json behind, so the corrected command was refused.
    from tfcontrast import distribute
    from tfcontrast.models import recipes

    asked, library_helper = [], distribute.get_strategy

    def get_strategy(kind="auto", tpu=None):
        asked.append(kind)
        return library_helper(kind, tpu)

    def fail(*args, **kwargs):
        raise _Internal("something inside went wrong")

    monkeypatch.setattr(distribute, "get_strategy", get_strategy)
    monkeypatch.setattr(recipes, "build_model" if where == "build" else "fit", fail)
    run_dir = tmp_path / "run"
    parse(f"--data={digits_npz}", f"--run_dir={run_dir}", "--strategy=none", "--export=false")
    with pytest.raises(_Internal):
        cli._main_with_errors(["tfcontrast", "train"])
    assert asked == ["default"]  # the library's strategy helper
    assert not (run_dir / "config.json").exists()
    assert "tfcontrast: error" not in capsys.readouterr().err


def test_a_recipe_error_from_inside_names_its_flag(tmp_path, digits_npz, monkeypatch, capsys):
    from tfcontrast.models import recipes

    def fit(*args, **kwargs):
        raise recipes.RecipeError("options.temperature", "Recipe: too cold.")

    monkeypatch.setattr(recipes, "fit", fit)
    parse(f"--data={digits_npz}", f"--run_dir={tmp_path / 'run'}", "--export=false")
    with pytest.raises(SystemExit) as exit_info:
        cli._main_with_errors(["tfcontrast", "train"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "tfcontrast: error: --temperature: Recipe: too cold.\n"


# -- the run directory survives kills and corrupt files (issue 23, items 7 and 9) -------
class _Killed(Exception):
    """Stands for a SIGKILL: nothing after it runs (Keras' fit has no `finally`)."""


def _tiny_train(digits_npz, run_dir, epochs, *more_flags):
    parse(
        f"--data={digits_npz}",
        f"--run_dir={run_dir}",
        f"--epochs={epochs}",
        "--batch_size=64",
        "--backbone=small_convnet",
        "--width=8",
        "--export=false",
        "--verbose=0",
        *more_flags,
    )
    return cli.main(["tfcontrast", "train"])


def _logged_epochs(run_dir):
    import csv

    with open(os.path.join(run_dir, "history.csv")) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


@pytest.mark.parametrize("after", ["history_row", "backup"])
def test_a_kill_at_the_end_of_an_epoch_loses_no_history_row(
    tmp_path, digits_npz, monkeypatch, after
):
    # Killed after epoch 1's backup (before its row, with the backup written first) the
    # row was lost for good; killed after its row but before its backup, resuming trains
    # epoch 1 again and must not log it twice.
    import keras

    callback = (
        keras.callbacks.CSVLogger if after == "history_row" else keras.callbacks.BackupAndRestore
    )
    on_epoch_end = callback.on_epoch_end

    def killed_at_epoch_1(self, epoch, logs=None):
        on_epoch_end(self, epoch, logs)
        if epoch == 1:
            raise _Killed()

    run_dir = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(callback, "on_epoch_end", killed_at_epoch_1)
        with pytest.raises(_Killed):
            _tiny_train(digits_npz, run_dir, epochs=3)
    assert (run_dir / "config.json").exists()  # training started: resume with these flags
    _tiny_train(digits_npz, run_dir, epochs=3)
    assert _logged_epochs(run_dir) == [0, 1, 2]


def test_corrupt_backup_and_model_files(tmp_path, digits_npz, capsys):
    run_dir = tmp_path / "run"
    _tiny_train(digits_npz, run_dir, epochs=2)
    backup = run_dir / "backup"

    def truncate(path):
        path.write_bytes(path.read_bytes()[:100])

    # Cut short by a kill while written (so before the run finished: no metrics.json): the
    # backup of the epoch before takes over, and the epoch after it is trained (and logged)
    # again.
    truncate(backup / "latest.weights.h5")
    (run_dir / "metrics.json").unlink()
    _tiny_train(digits_npz, run_dir, epochs=2)
    assert _logged_epochs(run_dir) == [0, 1]
    capsys.readouterr()

    for path in backup.iterdir():
        truncate(path)
    (run_dir / "metrics.json").unlink()
    with pytest.raises(SystemExit) as exit_info:
        cli._main_with_errors(["tfcontrast", "train"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tfcontrast: error: --run_dir: the backup in {backup} cannot be read")
    assert f"Delete {backup} to train this run from its first epoch" in err
    assert err.count("\n") == 1

    truncate(run_dir / "model.keras")
    parse(f"--run_dir={run_dir}")
    with pytest.raises(SystemExit) as exit_info:
        cli._main_with_errors(["tfcontrast", "evaluate"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tfcontrast: error: --run_dir: {run_dir / 'model.keras'} cannot be read")
    assert "run the same `tfcontrast train` command again" in err and err.count("\n") == 1


def test_files_train_and_index_and_answer_queries_by_path(tmp_path, capsys):
    """A CSV manifest of PNG files trains; `index` embeds an unlabelled folder with each
    file's path as payload; `search --query=FILE` finds that very file first."""
    from PIL import Image

    digits = load_digits()
    folder = tmp_path / "pngs"
    folder.mkdir()
    paths = []
    for i, image in enumerate(digits.images[:160]):
        paths.append(str(folder / f"{i:03d}.png"))
        Image.fromarray((image * 255 / 16).astype("uint8")).save(paths[-1])
    manifest = tmp_path / "train.csv"
    manifest.write_text(
        "path,label\n"
        + "".join(f"pngs/{i:03d}.png,{d}\n" for i, d in enumerate(digits.target[:160]))
    )
    run_dir = tmp_path / "run"
    metrics = _tiny_train(manifest, run_dir, epochs=1)
    assert 0.0 <= metrics["model"]["1nn_accuracy"] <= 1.0  # the manifest's labels were read

    parse(f"--run_dir={run_dir}", f"--data={folder}")
    index = cli.main(["tfcontrast", "index"])
    assert len(index) == 160 and index.labels is None
    assert "160 images of shape (8, 8, 1), no labels" in capsys.readouterr().out

    parse(f"--run_dir={run_dir}", f"--query={paths[7]},{paths[42]}", "--k=3")
    result = cli.main(["tfcontrast", "search"])
    assert [row[0] for row in result.payloads] == [paths[7], paths[42]]
    np.testing.assert_allclose(result.scores[:, 0], 1.0, atol=1e-4)
    out = capsys.readouterr().out
    assert out.startswith(f"{paths[7]};\n") and paths[42] in out

    parse(f"--run_dir={run_dir}", f"--query={tmp_path / 'nothing.png'}")
    with pytest.raises(cli.UsageError, match="--query: no such file or folder"):
        cli.main(["tfcontrast", "search"])


def test_an_earlier_run_is_the_backbone_of_a_supervised_run(tmp_path, digits_npz, capsys):
    # Issue 35: pre-train without labels, then a metric loss on a few labelled images.
    pretrained = str(tmp_path / "pretrained")
    unlabelled = tmp_path / "unlabelled.npz"
    np.savez(unlabelled, x=(load_digits().images[:200] / 16.0).astype("float32"))
    common = ["--epochs=1", "--batch_size=64", "--export=false", "--verbose=0"]
    parse(f"--data={unlabelled}", f"--run_dir={pretrained}", *common)
    cli.main(["tfcontrast", "train"])
    parse(
        f"--data={digits_npz}",
        f"--run_dir={tmp_path / 'few'}",
        f"--backbone={pretrained}",
        "--algorithm=supcon",
        *common,
    )
    metrics = cli.main(["tfcontrast", "train"])
    assert 0.0 <= metrics["model"]["1nn_accuracy"] <= 1.0
    out = capsys.readouterr().out
    assert f"backbone: the pre-trained backbone of {pretrained} (fine-tuned here)" in out
    with open(tmp_path / "few" / "config.json") as f:
        assert json.load(f)["recipe"]["backbone"] == pretrained
    # The pre-trained backbone takes 8x8 gray digits: other images are refused by name.
    parse(f"--data={digits_npz}", f"--backbone={pretrained}", "--image_size=16", *common)
    with pytest.raises(cli.UsageError, match="--backbone: .*takes images of shape 8x8x1"):
        cli.main(["tfcontrast", "train"])


def test_the_run_directory_is_named_for_the_flags_given():
    parse("--data=some/photos.npz")
    assert cli._run_dir() == os.path.join("runs", "photos")  # the images chose the method
    parse("--data=some/photos.npz", "--algorithm=byol")
    assert cli._run_dir() == os.path.join("runs", "byol-photos")


def test_a_time_budget_is_counted_once_and_kept_on_resume(tmp_path, digits_npz, capsys):
    run_dir = tmp_path / "run"
    flags_ = [f"--data={digits_npz}", f"--run_dir={run_dir}", "--time_budget=0.05"]
    flags_ += ["--batch_size=64", "--export=false", "--verbose=0"]
    parse(*flags_)
    metrics = cli.main(["tfcontrast", "train"])
    out = capsys.readouterr().out
    assert "time budget: 0.05 minutes of training; a step takes" in out
    with open(run_dir / "config.json") as f:
        recipe = json.load(f)["recipe"]
    assert recipe["epochs"] == metrics["epochs"] >= 1 and recipe["time_budget"] is None
    # The same command again resumes with the epochs counted the first time.
    parse(*flags_)
    again = cli.main(["tfcontrast", "train"])
    assert f"{metrics['epochs']} epochs as first counted" in capsys.readouterr().out
    assert again["epochs"] == metrics["epochs"]
    with open(run_dir / "history.csv") as f:
        assert len(f.read().strip().splitlines()) == 1 + metrics["epochs"]


def test_planted_links_in_a_run_directory_are_never_written_through(tmp_path, digits_npz, capsys):
    # Issue 37: R/metrics.json.partial linked to another file made `train` overwrite it;
    # R/index.partial linked to a directory made `index` write into it.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run_dir / "metrics.json.partial").symlink_to(victim)
    (run_dir / "plots").symlink_to(elsewhere, target_is_directory=True)
    _tiny_train(digits_npz, run_dir, 1)
    assert "warning: removed the symbolic link" in capsys.readouterr().out
    assert victim.read_text() == "precious" and list(elsewhere.iterdir()) == []
    assert (run_dir / "metrics.json").exists() and not (run_dir / "plots").is_symlink()
    (run_dir / "index.partial").symlink_to(elsewhere, target_is_directory=True)
    parse(f"--run_dir={run_dir}", f"--data={digits_npz}")
    cli.main(["tfcontrast", "index"])
    assert list(elsewhere.iterdir()) == [] and not (run_dir / "index").is_symlink()
    assert (run_dir / "index" / "index.json").exists()


def test_an_export_name_from_a_run_config_stays_inside_the_export_dir(tmp_path, digits_npz, capsys):
    # Issue 37: `export` took the name from config.json's algorithm unchecked.
    run_dir = tmp_path / "run"
    _tiny_train(digits_npz, run_dir, 1)
    config_path = run_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["recipe"]["algorithm"] = "x/../../../../elsewhere"
    config_path.write_text(json.dumps(config))
    exports = tmp_path / "exports"
    parse(f"--run_dir={run_dir}", f"--export_dir={exports}")
    with pytest.raises(cli.UsageError, match="--name: the export name .* is not a plain name"):
        cli.main(["tfcontrast", "export"])
    assert not exports.exists() and not (tmp_path / "elsewhere").exists()
    parse(f"--run_dir={run_dir}", f"--export_dir={exports}", "--name=../out")
    with pytest.raises(cli.UsageError, match="--name: --name '../out' is not a plain name"):
        cli.main(["tfcontrast", "export"])


def test_a_class_with_few_images_gets_fewer_shots_and_the_run_still_reports(
    tmp_path, digits_npz, capsys
):
    # Issue 37: `--max_examples=60` left classes with < 10 training images; the report
    # failed after training and nothing was written.
    run_dir = tmp_path / "run"
    metrics = _tiny_train(digits_npz, run_dir, 1, "--max_examples=60")
    with open(run_dir / "metrics.json") as f:
        saved = json.load(f)
    (key,) = [k for k in saved["model"] if k.endswith("_labels_1nn_accuracy")]
    smallest = int(key.split("_")[0])
    assert 1 <= smallest < 10 and key in metrics["raw_pixels"]
    assert (run_dir / "index" / "index.json").exists()


def test_a_collapsed_embedding_is_plotted_without_projection(tmp_path):
    # Issue 37: t-SNE on identical rows crashed the process after training.
    from tfcontrast.evaluation import plots

    same = np.ones((50, 8), "float32")
    points, used = plots.project_2d(same)
    assert used == "collapsed" and np.all(points == 0)
    path = plots.projection_plot(same, np.arange(50) % 3, str(tmp_path / "p.png"))
    assert os.path.getsize(path) > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data=/no/such/folder"], "--data: no such file or folder: '/no/such/folder'"),
        (["--time_budget=0"], "--time_budget: expected a positive number"),
        (["--test_fraction=1.5"], "--test_fraction"),
    ],
)
def test_flag_mistakes_are_said_before_tensorflow_loads(monkeypatch, capsys, args, message):
    # Issue 38: a missing --data path took 5 s, TensorFlow loading before the check.
    from tfcontrast import _cli_logs

    def no_tensorflow(*_):
        raise AssertionError("TensorFlow was loaded before the flags were checked")

    monkeypatch.setattr(_cli_logs, "import_tensorflow", no_tensorflow)
    parse(*args)
    with pytest.raises(SystemExit) as exit_info:
        cli._main_with_errors(["tfcontrast", "train"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
