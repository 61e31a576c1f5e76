"""Input checks of the export functions: the model's image shape, image arrays and
datasets, preprocessing and version numbers. Each bad input is a ValueError naming the
argument and what was expected."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfcontrast import _checks

_HOW_TO_GIVE_A_SHAPE = (
    "Pass `input_shape=(H, W, C)` to the export, or build the model with a known input "
    "shape (e.g. `keras.Input((32, 32, 3))` as its first layer, or call "
    "`model.build((None, H, W, C))` / run it once on a batch)."
)


def _known_shape(shape) -> tuple | None:
    if shape is None:
        return None
    return tuple(None if d is None else int(d) for d in shape)


def _model_shapes(model) -> list[tuple]:
    """The input shapes (without batch) a model states, most explicit first."""
    candidates = []
    if isinstance(model, keras.Model):
        try:
            inputs = model.inputs
        except (AttributeError, ValueError):
            inputs = None
        if inputs:
            if len(inputs) != 1:
                raise ValueError(
                    f"export: the model has {len(inputs)} inputs; export supports "
                    "image models with one input (B, H, W, C)."
                )
            candidates.append(tuple(inputs[0].shape)[1:])
    image_shape = getattr(model, "_image_shape", None)  # ContrastiveModel, once built
    if image_shape is not None:
        candidates.append(tuple(image_shape))
    build_shapes = getattr(model, "_build_shapes_dict", None)
    if getattr(model, "built", False) and build_shapes and len(build_shapes) == 1:
        only = next(iter(build_shapes.values()))
        if only is not None and len(only) == 4:
            candidates.append(tuple(only)[1:])
    return candidates


def image_shape(model, input_shape) -> tuple[int, int, int]:
    """The `(H, W, C)` a model takes, from `input_shape` or the model itself."""
    if input_shape is not None:
        shape = _known_shape(input_shape)
        if len(shape) == 4:
            shape = shape[1:]
    else:
        candidates = _model_shapes(model)
        shape = _known_shape(candidates[0]) if candidates else None
    if shape is None:
        raise ValueError(f"export: the model has no known input shape. {_HOW_TO_GIVE_A_SHAPE}")
    if len(shape) != 3 or any(d is None or d <= 0 for d in shape):
        raise ValueError(
            f"export: `input_shape` must be a fully known image shape (H, W, C); the model "
            f"gives {shape}. {_HOW_TO_GIVE_A_SHAPE}"
        )
    if shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"export: images must have 1, 3 or 4 channels to be decoded from bytes; "
            f"`input_shape` is {shape}."
        )
    return shape


def check_images(data, shape, argument: str, *, batch=None) -> np.ndarray:
    """`data` as a float32 `(N, H, W, C)` array, or a ValueError naming `argument`."""
    if isinstance(data, tf.data.Dataset):
        data = _dataset_to_array(data, shape, argument, batch)
    try:
        array = np.asarray(data)
    except Exception as error:  # noqa: BLE001 - re-raised with the argument named
        raise ValueError(
            f"`{argument}` must be an array or tf.data.Dataset of images; received "
            f"{type(data).__name__} ({error})."
        ) from error
    if array.dtype == object or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"`{argument}` must hold numeric images; received dtype {array.dtype}.")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(
            f"`{argument}` must be floating-point images as the model receives them "
            f"(e.g. uint8 pixels multiplied by 1/255); received dtype {array.dtype}."
        )
    if array.ndim == 3 and tuple(array.shape) == tuple(shape):
        array = array[None]
    if array.ndim != 4 or tuple(array.shape[1:]) != tuple(shape) or len(array) == 0:
        raise ValueError(
            f"`{argument}` must have shape (N, {', '.join(map(str, shape))}) to match "
            f"the model input; received shape {tuple(array.shape)}."
        )
    if batch is not None:
        array = array[:batch]
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{argument}` contains NaN or infinite values.")
    return array.astype(np.float32)


def _dataset_to_array(dataset, shape, argument, limit):
    spec = dataset.element_spec
    if isinstance(spec, (tuple, list)):  # (images, labels) pairs: keep the images
        dataset = dataset.map(lambda *xs: xs[0])
        spec = spec[0]
    if isinstance(spec, dict) or not hasattr(spec, "shape"):
        raise ValueError(
            f"`{argument}`: a tf.data.Dataset must yield image tensors or (images, labels); "
            f"its element_spec is {spec}."
        )
    if not spec.dtype.is_floating:
        raise ValueError(
            f"`{argument}` must be floating-point images as the model receives them "
            f"(e.g. uint8 pixels multiplied by 1/255); the dataset yields {spec.dtype.name}."
        )
    if spec.shape.rank == 3:
        dataset = dataset.batch(64)
    elif spec.shape.rank != 4:
        raise ValueError(
            f"`{argument}` must yield images (H, W, C) or batches (B, H, W, C) matching "
            f"{tuple(shape)}; the dataset yields shape {spec.shape}."
        )
    chunks, count = [], 0
    for chunk in dataset:
        chunks.append(np.asarray(chunk))
        count += len(chunks[-1])
        if limit is not None and count >= limit:
            break
    if not chunks:
        raise ValueError(f"`{argument}` is an empty dataset.")
    shapes = {c.shape[1:] for c in chunks}
    if len(shapes) != 1:
        raise ValueError(f"`{argument}` yields images of several shapes: {sorted(shapes)}.")
    return np.concatenate(chunks)


def default_sample(shape, pixel_scale, n=64) -> np.ndarray:
    """Uniform random pixels in the model's input convention, for the parity check."""
    rng = np.random.default_rng(0)
    high = 255.0 * float(pixel_scale)
    return rng.uniform(0.0, high, size=(n,) + tuple(shape)).astype(np.float32)


def ensure_built(model, shape) -> None:
    """Builds an unbuilt model by running it once (ExportArchive needs its variables)."""
    if not model.built:
        model(tf.zeros((1,) + tuple(shape)), training=False)


def prepare_preprocessing(preprocessing, shape):
    """`preprocessing` checked to be callable, a Keras layer built for `shape`."""
    if preprocessing is None:
        return None
    if not callable(preprocessing):
        raise ValueError(
            f"`preprocessing` must be a callable or Keras layer; received "
            f"{type(preprocessing).__name__}."
        )
    if isinstance(preprocessing, keras.layers.Layer) and not preprocessing.built:
        preprocessing(tf.zeros((1,) + tuple(shape)))
    return preprocessing


def check_version(version) -> int:
    return _checks.integer("version", version, "export.saved_model", least=0)


def check_pixel_scale(pixel_scale) -> float:
    if not (isinstance(pixel_scale, (int, float)) and pixel_scale > 0):
        raise ValueError(f"`pixel_scale` must be a positive number; received {pixel_scale!r}.")
    return float(pixel_scale)


def describe(obj) -> str:
    """A short name of a model or preprocessing for the report."""
    if isinstance(obj, keras.layers.Layer):
        return f"{type(obj).__name__}({obj.name})"
    return getattr(obj, "__qualname__", type(obj).__name__)
