"""Backbones: the ResNet's strided shortcuts compute a strided 1x1 convolution, and
training steps on odd batch sizes do not crash TensorFlow's oneDNN kernels."""

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from tfcontrast.models import backbones


@pytest.mark.parametrize("side", [16, 15])
def test_shortcut_is_a_strided_one_by_one_convolution(side):
    model = backbones.cifar_resnet18((side, side, 3), width=4)
    shortcut = model.get_layer("stage2_block1_shortcut_conv")
    x = np.random.default_rng(0).normal(size=(2, side, side, 4)).astype("float32")
    kernel = keras.ops.convert_to_numpy(shortcut.kernel)  # (1, 1, 4, 8)
    # Reference: a 1x1 convolution with stride 2 and "same" padding reads pixels
    # (2i, 2j), whatever the parity of the side.
    expected = np.einsum("bhwc,cd->bhwd", x[:, ::2, ::2], kernel[0, 0])
    subsample = model.get_layer("stage2_block1_shortcut_subsample")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(shortcut(subsample(x))), expected, rtol=1e-5, atol=1e-5
    )
    assert model.get_layer("stage2_block1_1_conv").output.shape[1] == -(-side // 2)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="a TensorFlow kernel")
def test_training_step_on_odd_batch_sizes_survives():
    # TensorFlow 2.21's oneDNN gradient of a strided 1x1 convolution corrupted memory at
    # batch 7 on 16x16 images and at 123 (USPS's last batch of 256): the process died.
    # In a subprocess, so that a crash fails this test instead of killing the run.
    script = textwrap.dedent(
        """
        import numpy as np, tensorflow as tf
        from tfcontrast.models import backbones
        model = backbones.cifar_resnet18((16, 16, 1), width=8)
        for batch in (1, 7, 123):
            x = tf.random.normal((batch, 16, 16, 1))
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(model(x, training=True)))
            grads = tape.gradient(loss, model.trainable_variables)
            assert all(np.isfinite(g.numpy()).all() for g in grads)
        print("survived")
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0 and "survived" in run.stdout, run.stderr[-2000:]


def test_application_preprocessing_matches_its_closed_form():
    # ResNet50 expects caffe-style input: 0..255, BGR, ImageNet channel means removed.
    x = np.random.default_rng(1).uniform(size=(2, 5, 5, 3)).astype("float32")
    got = keras.ops.convert_to_numpy(backbones.ApplicationPreprocessing("ResNet50")(x))
    expected = x[..., ::-1] * 255.0 - np.array([103.939, 116.779, 123.68], "float32")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)
    gray = keras.ops.convert_to_numpy(backbones.ApplicationPreprocessing("ResNet50")(x[..., :1]))
    np.testing.assert_allclose(gray[..., 0] + 103.939, gray[..., 2] + 123.68, atol=1e-3)


def test_application_backbone_loads_a_weights_file(tmp_path):
    # A user's own weights file of the application (what weights="imagenet" downloads).
    keras.utils.set_random_seed(0)
    net = keras.applications.MobileNetV3Small(
        include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg"
    )
    path = str(tmp_path / "mobilenet.weights.h5")
    net.save_weights(path)
    x = np.random.default_rng(2).uniform(size=(4, 32, 32, 1)).astype("float32")
    backbone = backbones.get("mobilenetv3small", (32, 32, 1), weights=path)
    assert backbone.output_shape == net.output_shape

    # Batch statistics: at initialisation the moving ones shrink the features to ~1e-10.
    def features(model, images):
        return keras.ops.convert_to_numpy(model(images, training=True))

    # Gray raw pixels in [0, 1] in; MobileNetV3 rescales 0..255 inside itself.
    expected = features(net, np.repeat(x, 3, axis=-1) * 255.0)
    assert np.abs(expected).mean() > 1e-3
    np.testing.assert_allclose(features(backbone, x), expected, rtol=1e-3, atol=1e-4)
    fresh = backbones.get("MobileNetV3Small", (32, 32, 1))
    assert not np.allclose(features(fresh, x), expected, rtol=1e-2, atol=1e-3)
    clone = keras.models.clone_model(backbone)  # momentum targets clone backbones
    clone.set_weights(backbone.get_weights())
    np.testing.assert_allclose(features(clone, x), expected, rtol=1e-3, atol=1e-4)


def test_application_errors_name_the_fix():
    with pytest.raises(ValueError, match="at least 32x32.*image_size"):
        backbones.get("ResNet50", (16, 16, 1))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        backbones.get("ResNet50", (32, 32, 2))
    with pytest.raises(ValueError, match="no pretrained weights"):
        backbones.get("small_convnet", (8, 8, 1), weights="imagenet")
    with pytest.raises(ValueError, match="Unknown `backbone`"):
        backbones.get("ResNet51", (32, 32, 3))
