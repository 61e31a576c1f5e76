"""Backbones for small images: a CIFAR-style ResNet-18 and a small ConvNet.

Both are Functional models that map images `(H, W, C)` to a feature vector, so they can
be cloned for momentum encoders and exported. Any `keras.applications` model built with
`include_top=False, pooling="avg"` works in their place.

Example:

```python
from tfcontrast.models import backbones

resnet = backbones.cifar_resnet18((32, 32, 3))     # 512-d features
convnet = backbones.small_convnet((8, 8, 1))       # 128-d features, for digits
```
"""

from __future__ import annotations

import keras
from keras import layers

from tfcontrast.layers.normalization import FusedBatchNormalization


def _conv_bn(x, filters, kernel, stride, name):
    if kernel == 1 and stride > 1:
        # A strided 1x1 convolution reads every `stride`-th pixel: subsample, then
        # convolve at stride 1 (the same function and weights). TensorFlow 2.21's oneDNN
        # kernel for the strided 1x1 gradient corrupts memory on some odd batch sizes
        # (a ResNet shortcut at batch 123 kills the process); this form avoids it.
        x = layers.MaxPooling2D(1, strides=stride, name=f"{name}_subsample")(x)
        stride = 1
    x = layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    return FusedBatchNormalization(name=f"{name}_bn")(x)


def _basic_block(x, filters, stride, name):
    shortcut = x
    y = _conv_bn(x, filters, 3, stride, f"{name}_1")
    y = layers.ReLU(name=f"{name}_1_relu")(y)
    y = _conv_bn(y, filters, 3, 1, f"{name}_2")
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, stride, f"{name}_shortcut")
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def cifar_resnet18(input_shape=(32, 32, 3), width: int = 64, name="cifar_resnet18"):
    """ResNet-18 adapted to 32x32 images: a 3x3 stride-1 stem and no max-pool.

    This is the backbone of the CIFAR-10 experiments of SimCLR, SimSiam and most
    self-supervised baselines. Output: global-average-pooled features of size
    `8 * width` (512 by default).
    """
    inputs = keras.Input(input_shape, name="images")
    x = _conv_bn(inputs, width, 3, 1, "stem")
    x = layers.ReLU(name="stem_relu")(x)
    for stage, multiplier in enumerate((1, 2, 4, 8)):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, width * multiplier, stride, f"stage{stage + 1}_block{block + 1}")
    outputs = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, outputs, name=name)


def small_convnet(
    input_shape=(8, 8, 1), width: int = 32, output_dim: int = 128, name="small_convnet"
):
    """A small ConvNet for 8x8 to 32x32 images (digits, MNIST, CIFAR at low cost).

    Three 3x3 conv blocks with BatchNorm (the last two stride 2), global average
    pooling and a Dense layer to `output_dim` features.
    """
    inputs = keras.Input(input_shape, name="images")
    x = inputs
    for i, (filters, stride) in enumerate(((width, 1), (2 * width, 2), (4 * width, 2))):
        x = _conv_bn(x, filters, 3, stride, f"block{i + 1}")
        x = layers.ReLU(name=f"block{i + 1}_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(output_dim, name="features")(x)
    return keras.Model(inputs, outputs, name=name)


_BACKBONES = {
    "cifar_resnet18": cifar_resnet18,
    "resnet18": cifar_resnet18,
    "small_convnet": small_convnet,
    "convnet": small_convnet,
}


def names() -> list[str]:
    return sorted(_BACKBONES)


def get(name: str, input_shape, **kwargs) -> keras.Model:
    """Builds a backbone by name (see `names()`) for `input_shape`."""
    if name not in _BACKBONES:
        raise ValueError(f"Unknown `backbone`: {name!r}. Expected one of {names()}.")
    return _BACKBONES[name](input_shape, **kwargs)
