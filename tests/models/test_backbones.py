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
    kernel = np.asarray(shortcut.kernel)  # (1, 1, 4, 8)
    # Reference: a 1x1 convolution with stride 2 and "same" padding reads pixels
    # (2i, 2j), whatever the parity of the side.
    expected = np.einsum("bhwc,cd->bhwd", x[:, ::2, ::2], kernel[0, 0])
    subsample = model.get_layer("stage2_block1_shortcut_subsample")
    np.testing.assert_allclose(np.asarray(shortcut(subsample(x))), expected, rtol=1e-5, atol=1e-5)
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
