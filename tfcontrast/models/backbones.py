"""Backbones: a CIFAR-style ResNet-18 and a small ConvNet for small images trained from
scratch, every `keras.applications` model, pretrained or not, and KerasHub image
backbones saved as local presets.

All are Functional models that map raw images `(H, W, C)` with values in [0, 1] to a
feature vector, so they can be cloned for momentum encoders and exported with a signature
that takes raw pixels. Any Keras model with that contract works in their place.

Example:

```python
from tfcontrast.models import backbones

resnet = backbones.cifar_resnet18((32, 32, 3))     # 512-d features
convnet = backbones.small_convnet((8, 8, 1))       # 128-d features, for digits
# A keras.applications model, its own input preprocessing inside, ImageNet weights
# (or None, or the path of a weights file):
efficient = backbones.get("EfficientNetV2B0", (96, 96, 3), weights="imagenet")
# A KerasHub image backbone from a preset directory (needs `pip install keras-hub`):
hub = backbones.get("presets/resnet_18_imagenet", (96, 96, 3))
# The backbone of an earlier run (its run directory, or a saved `.keras` model):
mine = backbones.get("runs/simclr-unlabelled", (32, 32, 3))
```
"""

from __future__ import annotations

import importlib
import os

import keras
from keras import layers, ops

from tfcontrast import _checks
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


# -- keras.applications ----------------------------------------------------------------
APPLICATIONS = sorted(name for name in dir(keras.applications) if name[:1].isupper())
_APPLICATION_NAMES = {name.lower(): name for name in APPLICATIONS}  # case-insensitive look-up


@keras.saving.register_keras_serializable(package="tfcontrast")
class ApplicationPreprocessing(keras.layers.Layer):
    """Raw images in [0, 1] to the input a `keras.applications` model expects: scaled to
    [0, 255], gray images repeated to 3 channels, then the application's own
    `preprocess_input` (caffe, torch or tf modes; a pass-through for the models that
    normalise inside, such as EfficientNet and ConvNeXt)."""

    def __init__(self, application: str, **kwargs):
        super().__init__(**kwargs)
        self.application = application
        module = importlib.import_module(getattr(keras.applications, application).__module__)
        self._preprocess = module.preprocess_input

    def call(self, images):
        if images.shape[-1] == 1:
            images = ops.repeat(images, 3, axis=-1)
        return self._preprocess(ops.cast(images, self.compute_dtype) * 255.0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (3,)

    def get_config(self):
        return {**super().get_config(), "application": self.application}


class WeightsError(ValueError):
    """A weights file that cannot be read, or does not fit the backbone."""


def application(name: str, input_shape, weights=None) -> keras.Model:
    """A `keras.applications` model (`include_top=False`, average pooling) that takes raw
    images in [0, 1], 1 or 3 channels, with its input preprocessing inside.

    Args:
        name: the application's name, e.g. `"ResNet50"`, `"EfficientNetV2B0"`,
            `"MobileNetV3Small"`, `"ConvNeXtTiny"` (case-insensitive; see
            `APPLICATIONS`).
        input_shape: `(H, W, C)` with `C` 1 or 3.
        weights: `None` (random), `"imagenet"` (downloaded by Keras) or the path of a
            weights file of the same application.
    """
    if not is_application(name):
        raise ValueError(
            f"Unknown `backbone`: {name!r}. Expected one of {names()}."
            + _checks.did_you_mean(name, names())
        )
    name = _APPLICATION_NAMES[name.lower()]
    height, width, channels = (int(v) for v in input_shape[-3:])
    if channels not in (1, 3):
        raise ValueError(f"backbone {name}: images must have 1 or 3 channels; received {channels}.")
    weights_file = weights not in (None, "imagenet")
    try:
        network = getattr(keras.applications, name)(
            include_top=False,
            weights=None if weights_file else weights,
            input_shape=(height, width, 3),
            pooling="avg",
        )
    except ValueError as error:  # e.g. "input must be at least 32x32"
        raise ValueError(
            f"backbone {name} on {height}x{width} images: {str(error).rstrip('. ')}. Resize "
            "the images (`image_size`) or choose another backbone."
        ) from None
    if weights_file:
        try:
            network.load_weights(weights)
        except (OSError, ValueError) as error:
            raise WeightsError(
                f"the weights file {weights!r} does not fit backbone {name} "
                f"(include_top=False) on {height}x{width} images: "
                f"{str(error).splitlines()[0]}"
            ) from None
    inputs = keras.Input((height, width, channels), name="images")
    x = ApplicationPreprocessing(name, name="preprocessing")(inputs)
    return keras.Model(inputs, network(x), name=name.lower())


@keras.saving.register_keras_serializable(package="tfcontrast")
class PixelScale(keras.layers.Layer):
    """Raw images in [0, 1] to [0, 255], gray images repeated to `channels` channels."""

    def __init__(self, channels: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels

    def call(self, images):
        if images.shape[-1] != self.channels:
            images = ops.repeat(images, self.channels, axis=-1)
        return ops.cast(images, self.compute_dtype) * 255.0

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.channels,)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


def is_preset(name: str) -> bool:
    """Whether `name` is a local KerasHub preset directory (one holding `config.json`)."""
    return os.path.isfile(os.path.join(name, "config.json"))


def kerashub(preset: str, input_shape) -> keras.Model:
    """A KerasHub image backbone from a local preset directory, with its weights, taking
    raw images in [0, 1] (1 or 3 channels): scaled to [0, 255], then the preset's own
    `ImageConverter` (its resizing, scale and offset) when it has one, then the backbone,
    whose feature map (or tokens) is average-pooled to a vector.

    A preset directory is what `save_to_preset` writes, or a downloaded preset
    (`config.json`, `model.weights.h5`, optionally `image_converter.json`).
    """
    try:
        import keras_hub
    except ImportError:
        raise ValueError(
            f"backbone {preset!r} is a KerasHub preset; install keras-hub to use it "
            "(pip install keras-hub)."
        ) from None
    try:
        network = keras_hub.models.Backbone.from_preset(preset)
    except Exception as error:  # noqa: BLE001 - KerasHub raises many kinds here
        raise ValueError(
            f"backbone {preset!r}: not a readable KerasHub backbone preset ({error})."
        ) from None
    spec = network.input_shape
    if not (isinstance(spec, tuple) and len(spec) == 4):
        raise ValueError(
            f"backbone {preset!r}: {type(network).__name__} is not an image backbone; "
            f"expected one that takes (batch, height, width, channels) images, received "
            f"inputs {spec}."
        )
    height, width, channels = (int(v) for v in input_shape[-3:])
    if channels not in (1, 3):
        raise ValueError(
            f"backbone {preset!r}: images must have 1 or 3 channels; received {channels}."
        )
    inputs = keras.Input((height, width, channels), name="images")
    x = PixelScale(int(spec[-1] or 3), name="pixel_scale")(inputs)
    if os.path.isfile(os.path.join(preset, "image_converter.json")):
        x = keras_hub.layers.ImageConverter.from_preset(preset, name="image_converter")(x)
    features = network(x)
    pool = {4: layers.GlobalAveragePooling2D, 3: layers.GlobalAveragePooling1D}.get(
        len(features.shape)
    )
    if pool is None:
        raise ValueError(
            f"backbone {preset!r}: {type(network).__name__} returns {features.shape}; "
            "expected a feature map or a sequence of tokens."
        )
    name = os.path.basename(os.path.normpath(preset))
    return keras.Model(inputs, pool(name="pool")(features), name=f"kerashub_{name}")


# -- an earlier run's backbone ---------------------------------------------------------
def saved_model_path(name: str) -> str | None:
    """The `.keras` file `name` points at: the file itself, or a run directory's
    `model.keras` (what `tfcontrast train` writes); None when it is neither."""
    if name.endswith(".keras"):
        return name
    path = os.path.join(name, "model.keras")
    return path if os.path.isfile(path) else None


def is_saved(name: str) -> bool:
    """Whether `name` is a `.keras` file or a run directory holding `model.keras`."""
    return saved_model_path(name) is not None


def from_saved(name: str, input_shape) -> keras.Model:
    """The backbone of a saved model: a `ContrastiveModel`'s `backbone` (pre-trained by
    `tfcontrast train` or `model.save`), or any saved Keras model that maps images to
    feature vectors. Its weights are the saved ones; they train on (fine-tuning) unless
    the recipe freezes them.

    Raises:
        ValueError: when nothing readable is there, or the saved backbone takes images of
            another size or number of channels than `input_shape`.

    Example:

    ```python
    pretrained = backbones.from_saved("runs/cifar10_small", (32, 32, 3))  # or a .keras file
    model = ContrastiveModel(pretrained, projector=ProjectionHead((256,), 64), algorithm="supcon")
    ```
    """
    path = saved_model_path(name)
    if path is None or not os.path.isfile(path):
        raise ValueError(
            f"backbone {name!r}: no saved model there; expected a `.keras` file or a run "
            "directory holding model.keras (written by `tfcontrast train`)."
        )
    try:
        saved = keras.saving.load_model(path)
    except Exception as error:  # noqa: BLE001 - zip, HDF5 and deserialisation errors alike
        raise ValueError(
            f"backbone {name!r}: {path} cannot be read as a Keras model "
            f"({_checks.first_line(error)})."
        ) from None
    network = getattr(saved, "backbone", saved)
    expected = tuple(int(v) for v in input_shape[-3:])
    taken = tuple(network.input_shape[1:])
    fits = len(taken) == 3 and all(t is None or t == e for t, e in zip(taken, expected))
    if not fits:
        shape = "x".join("any" if v is None else str(v) for v in taken)
        raise ValueError(
            f"backbone {name!r} takes images of shape {shape}; the data's are "
            f"{'x'.join(map(str, expected))}. Pre-train on images of the same size and "
            "channels, or resize them (`image_size`)."
        )
    return network


# -- pretrained first ---------------------------------------------------------------------
# The ImageNet model `choose_backbone` prefers for photos when its weights are at hand:
# EfficientNetV2-B0 is the smallest keras.applications model of its accuracy (78.7% top-1,
# 7M weights, 0.7 GFLOPs at 224 px), which is what a CPU can fine-tune. The file name is
# the one Keras caches its ImageNet weights under (`include_top=False`).
PRETRAINED = "EfficientNetV2B0"
PRETRAINED_FILE = "efficientnetv2-b0_notop.h5"


def cached_weights(file_name: str = PRETRAINED_FILE) -> str | None:
    """The path of Keras' cached weights file `file_name` (under `$KERAS_HOME/models`,
    `~/.keras/models` by default), or None when it was never downloaded."""
    from tfcontrast._keras_compat import keras_home

    path = os.path.join(keras_home(), "models", file_name)
    return path if os.path.isfile(path) else None


_BACKBONES = {
    "cifar_resnet18": cifar_resnet18,
    "resnet18": cifar_resnet18,
    "small_convnet": small_convnet,
    "convnet": small_convnet,
}


def names() -> list[str]:
    """The small-image backbones, then the `keras.applications` models."""
    return sorted(_BACKBONES) + APPLICATIONS


def is_application(name: str) -> bool:
    """Whether `name` is a `keras.applications` model (case-insensitive)."""
    return name.lower() in _APPLICATION_NAMES


def is_known(name: str) -> bool:
    return name in _BACKBONES or is_application(name) or is_preset(name) or is_saved(name)


def get(name: str, input_shape, weights=None, **kwargs) -> keras.Model:
    """Builds a backbone by name (see `names()`) for `input_shape`.

    `weights` (`None`, `"imagenet"` or a weights file) applies to `keras.applications`
    models; `kwargs` (e.g. `width`) to the small-image backbones. A KerasHub preset
    directory (`is_preset`), a saved model or a run directory (`is_saved`) brings its own
    weights.
    """
    own = {"a saved model": (is_saved, from_saved), "a KerasHub preset": (is_preset, kerashub)}
    for kind, (matches, build) in own.items():
        if matches(name):
            if weights is not None or kwargs:
                raise ValueError(
                    f"backbone {name!r}: {kind} brings its own weights and architecture; "
                    f"received weights={weights!r}, {kwargs}."
                )
            return build(name, input_shape)
    if name in _BACKBONES:
        if weights is not None:
            raise ValueError(
                f"backbone {name} has no pretrained weights; received weights={weights!r}. "
                "Use a keras.applications backbone, or load a weights file into the model."
            )
        return _BACKBONES[name](input_shape, **kwargs)
    return application(name, input_shape, weights=weights)
