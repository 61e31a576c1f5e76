"""enable_lora: only adapters train, parameter count, saving, the example's smoke run."""

import importlib.util
import pathlib

import keras
import numpy as np
import pytest

from tests.backend_utils import to_numpy
from tfcontrast.layers import ProjectionHead
from tfcontrast.models import (
    ContrastiveModel,
    backbones,
    count_lora_parameters,
    enable_lora,
    lora_variables,
    without_lora,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]


def tiny_backbone():
    keras.utils.set_random_seed(0)
    return backbones.small_convnet((8, 8, 1), width=4, output_dim=8)


def images(n=32, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, 8, 8, 1)).astype("float32")


def test_parameter_count_matches_conv_and_dense_shapes():
    backbone = tiny_backbone()
    rank = 2
    n = enable_lora(backbone, rank)
    # Conv kernel (3, 3, cin, cout): A is (3, 3, cin, r), B is (r, cout); Dense (in, out).
    expected = 0
    for cin, cout in ((1, 4), (4, 8), (8, 16)):
        expected += 9 * cin * rank + rank * cout
    expected += 16 * rank + rank * 8
    assert n == expected == count_lora_parameters(backbone)
    trainable = {id(v) for v in backbone.trainable_weights}
    assert trainable == {id(v) for v in lora_variables(backbone)}
    # LoRA starts at zero: the outputs are those of the pretrained backbone.
    plain = tiny_backbone()
    np.testing.assert_allclose(
        to_numpy(backbone(images())), to_numpy(plain(images())), rtol=1e-5, atol=1e-6
    )


def test_target_and_freeze_rest_options():
    backbone = tiny_backbone()
    enable_lora(backbone, 1, target=("Dense",), freeze_rest=False)
    adapted = [layer.name for layer in backbone.layers if getattr(layer, "lora_enabled", False)]
    assert adapted == ["features"]
    names = {w.path for w in backbone.trainable_weights}
    # Keras' own behaviour: only the adapted kernel is frozen.
    assert "features/kernel" not in names and "block1_bn/gamma" in names


def test_only_lora_weights_change_in_contrastive_fit():
    backbone = tiny_backbone()
    enable_lora(backbone, 2)
    frozen = {w.path: w.numpy().copy() for w in backbone.weights if "lora" not in w.path}
    lora_before = [w.numpy().copy() for w in lora_variables(backbone)]
    model = ContrastiveModel(
        backbone,
        projector=ProjectionHead((16,), 8),
        augmentation=keras.layers.GaussianNoise(0.1),
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(images(64), batch_size=32, epochs=1, verbose=0)
    for w in backbone.weights:
        if "lora" not in w.path:
            # Kernels, biases, BatchNorm scales and moving statistics: all unchanged.
            np.testing.assert_array_equal(w.numpy(), frozen[w.path], err_msg=w.path)
    lora_after = [w.numpy() for w in lora_variables(backbone)]
    assert any(not np.allclose(a, b) for a, b in zip(lora_before, lora_after))
    # Adapters off: exactly the pretrained backbone; back on afterwards.
    x = images(8, seed=3)
    pretrained = tiny_backbone()
    adapted = to_numpy(backbone(x))
    assert not np.allclose(adapted, to_numpy(pretrained(x)), atol=1e-5)
    with without_lora(backbone):
        np.testing.assert_allclose(
            to_numpy(backbone(x)), to_numpy(pretrained(x)), rtol=1e-5, atol=1e-6
        )
    np.testing.assert_allclose(to_numpy(backbone(x)), adapted, rtol=1e-6)


def test_keras_round_trip_keeps_the_adapted_model(tmp_path):
    backbone = tiny_backbone()
    enable_lora(backbone, 2)
    rng = np.random.default_rng(1)
    for w in lora_variables(backbone):
        w.assign(rng.normal(scale=0.1, size=w.shape))
    x = images(8)
    expected = to_numpy(backbone(x))
    path = tmp_path / "lora.keras"
    backbone.save(path)
    restored = keras.saving.load_model(path)
    # Keras merges A B into the saved kernel: same outputs, LoRA still enabled.
    np.testing.assert_allclose(to_numpy(restored(x)), expected, rtol=1e-5, atol=1e-5)
    conv = restored.get_layer("block2_conv")
    assert conv.lora_enabled and conv.lora_rank == 2
    original = backbone.get_layer("block2_conv")
    np.testing.assert_allclose(
        to_numpy(conv.kernel), to_numpy(original.kernel), rtol=1e-5, atol=1e-6
    )
    # Calling enable_lora again re-applies the freezing; the adapters keep training.
    assert enable_lora(restored, 2) == count_lora_parameters(backbone)
    assert {id(v) for v in restored.trainable_weights} == {id(v) for v in lora_variables(restored)}


def test_bad_arguments_raise_naming_the_argument():
    with pytest.raises(ValueError, match="rank"):
        enable_lora(tiny_backbone(), 0)
    with pytest.raises(ValueError, match="alpha"):
        enable_lora(tiny_backbone(), 2, alpha=-1.0)
    with pytest.raises(ValueError, match="target"):
        enable_lora(tiny_backbone(), 2, target=("LSTM",))
    with pytest.raises(ValueError, match="built"):
        enable_lora(keras.layers.Dense(3), 2)


def test_example_smoke_run_keeps_the_old_task_with_lora():
    spec = importlib.util.spec_from_file_location(
        "lora_finetuning", ROOT / "examples" / "lora_finetuning.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(["--smoke"])
    for key in ("pretrained", "full_finetune", "lora_finetune", "lora_adapters_off"):
        assert 0.0 <= results[key]["old_task_accuracy"] <= 1.0
    lora = results["lora_finetune"]
    assert lora["lora_parameters"] == lora["trainable_parameters"]  # backbone weights
    assert lora["trainable_parameters"] < results["full_finetune"]["trainable_parameters"]
    off = results["lora_adapters_off"]["old_task_accuracy"]
    assert off == results["pretrained"]["old_task_accuracy"]
