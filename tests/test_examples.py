"""Every example runs end to end in its smoke mode (tiny data, one epoch, small model).

Each script is imported by path and its `main(argv)` called in-process, so TensorFlow is
imported once for all of them; the assertions are on the result `main` returns.
"""

import importlib.util
import math
import os

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def run_example(name, argv, monkeypatch):
    monkeypatch.syspath_prepend(EXAMPLES)  # the digits examples import `_digits`
    spec = importlib.util.spec_from_file_location(
        f"example_{name}", os.path.join(EXAMPLES, f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def is_accuracy(value):
    return isinstance(value, float) and 0.0 <= value <= 1.0


DIGITS_SSL = [
    "supcon_digits",
    "moco_v2_digits",
    "byol_digits",
    "simsiam_digits",
    "vicreg_digits",
    "barlow_twins_digits",
    "dino_digits",
    "swav_digits",
    "nnclr_digits",
]


@pytest.mark.parametrize("name", DIGITS_SSL)
def test_contrastive_model_digits(name, monkeypatch):
    result = run_example(name, ["--smoke"], monkeypatch)
    assert math.isfinite(result["loss"])
    for key in (
        "knn_accuracy",
        "fewshot_accuracy",
        "pixels_knn_accuracy",
        "pixels_fewshot_accuracy",
    ):
        assert is_accuracy(result[key]), (key, result[key])
    # Even one tiny epoch keeps the features informative (chance is 0.1).
    assert result["knn_accuracy"] > 0.3
    if name == "dino_digits":  # the online probe, scored on the clean test digits
        assert is_accuracy(result["online_probe_accuracy"])


@pytest.mark.parametrize("argv", [["--smoke"], ["--smoke", "--xbm"]], ids=["batch", "xbm"])
def test_triplet_hard_mining(argv, monkeypatch):
    result = run_example("triplet_hard_mining", argv, monkeypatch)
    assert math.isfinite(result["loss"])
    assert is_accuracy(result["precision_at_1"]) and is_accuracy(result["map_at_r"])
    assert is_accuracy(result["knn_accuracy"])


def test_triplet_digits(monkeypatch):
    assert is_accuracy(float(run_example("triplet_digits", ["--smoke"], monkeypatch)))


def test_arcface_digits(monkeypatch):
    # (precision of the accepted matches, fraction of queries accepted) on the held-out half
    precision, answered = run_example("arcface_digits", ["--smoke"], monkeypatch)
    assert is_accuracy(precision) and 0.0 < answered <= 1.0


@pytest.mark.parametrize("loss", ["clip", "siglip"])
def test_clip_dual_encoder(loss, monkeypatch):
    result = run_example("clip_dual_encoder", ["--smoke", f"--loss={loss}"], monkeypatch)
    assert math.isfinite(result["loss"])
    assert result["logit_scale"] > 0
    for key in (
        "zero_shot_accuracy",
        "image_to_text_precision_at_1",
        "text_to_image_precision_at_1",
    ):
        assert is_accuracy(result[key]), (key, result[key])
    # The model owns the loss's LogitScale, so fit moves it off its initial value.
    assert abs(result["logit_scale"] - (1 / 0.07 if loss == "clip" else 10.0)) > 1e-4


def test_cmc_multiview(monkeypatch):
    result = run_example("cmc_multiview", ["--smoke"], monkeypatch)
    assert math.isfinite(result["loss"])
    assert is_accuracy(result["knn_accuracy"]) and is_accuracy(result["full_view_knn_accuracy"])


def test_image_search(tmp_path, monkeypatch):
    out = tmp_path / "search"
    result = run_example("image_search", ["--smoke", f"--out={out}"], monkeypatch)
    for key in ("precision_at_1", "recall_at_5", "map_at_r"):
        assert is_accuracy(result[key]), (key, result[key])
    assert os.path.getsize(result["grid_path"]) > 1000
    with open(result["grid_path"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(result["index_path"])) == ["arrays.npz", "index.json"]


def test_simclr_cifar10_on_mock_data(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow_datasets")
    result = run_example("simclr_cifar10", ["--smoke", "--mock", f"--out={tmp_path}"], monkeypatch)
    assert math.isfinite(result["loss"])
    assert is_accuracy(result["knn_accuracy"])


def test_export_serving(tmp_path, monkeypatch):
    pytest.importorskip("ai_edge_litert")
    result = run_example("export_serving", ["--smoke", f"--out={tmp_path}"], monkeypatch)
    assert os.path.exists(os.path.join(result["saved_model_path"], "saved_model.pb"))
    assert result["saved_model_cosine_min"] > 0.999
    for name in ("float32", "int8"):
        assert os.path.getsize(result[f"tflite_{name}_path"]) > 0
        assert is_accuracy(result[f"tflite_{name}_knn_accuracy"])
    # The float32 TFLite model embeds like the Keras model.
    assert abs(result["tflite_float32_knn_accuracy"] - result["keras_knn_accuracy"]) <= 0.02


def test_every_example_is_tested():
    tested = set(DIGITS_SSL) | {
        "triplet_hard_mining",
        "triplet_digits",
        "arcface_digits",
        "clip_dual_encoder",
        "cmc_multiview",
        "image_search",
        "simclr_cifar10",
        "export_serving",
    }
    scripts = {f[:-3] for f in os.listdir(EXAMPLES) if f.endswith(".py") and f[0] != "_"}
    # Examples tested in another file.
    elsewhere = {"lora_finetuning"}  # tests/models/test_lora.py
    assert scripts - tested - elsewhere == set()
