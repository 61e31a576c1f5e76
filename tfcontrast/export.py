"""Deployment: SavedModels for TF Serving and TFLite models for edge devices.

Every export is checked against the Keras model before it is put in place: the exported
artifact is loaded back, run on a sample, and compared with the Keras embeddings (cosine
similarity and agreement of top-1 neighbours, `ParityReport`). Below threshold, the export
raises `ParityError` and leaves nothing behind.

- `saved_model(model, "saved_models/NAME")` writes `saved_models/NAME/VERSION/` (the TF
  Serving layout) with two signatures:

  - `serving_default`: input `images`, float32 `(batch, H, W, C)` in the model's input
    convention (dynamic batch); output `embedding`, float32 `(batch, D)`, L2-normalized.
  - `serving_bytes`: input `image_bytes`, a batch of encoded JPEG/PNG/GIF/BMP strings
    (REST clients send them as `{"b64": ...}`); each is decoded, resized to `(H, W)` with
    bilinear interpolation, multiplied by `pixel_scale` (1/255: pixels in [0, 1]) and
    served like `serving_default`; output `embedding`.

  The optional `preprocessing` (a callable or Keras layer, e.g. the normalization the
  model was trained with) is baked into both signatures. The parity report is written to
  `VERSION/assets.extra/tfcontrast_parity.json` (TF Serving ignores `assets.extra/`
  except for warm-up files).
- `tflite(model_or_saved_model_path, "model.tflite", quantization=None | "float16" |
  "dynamic" | "int8", representative_data=...)` converts the `serving_default` signature
  and writes the report next to the file (`model.parity.json`).

This module needs TensorFlow (and `ai-edge-litert` to check TFLite files: `pip install
"tfcontrast[export]"`); it is not imported by `import tfcontrast` until first used.

Example:

```python
from tfcontrast import export

report = export.saved_model(model, "saved_models/digits")          # .../digits/1
print(report.cosine_min, report.path)
export.tflite(model, "digits_int8.tflite", quantization="int8",
              representative_data=train_images[:200])
```
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

logger = logging.getLogger("tfcontrast")

__all__ = [
    "OUTPUT_NAME",
    "BYTES_INPUT_NAME",
    "IMAGES_INPUT_NAME",
    "THRESHOLDS",
    "ParityError",
    "ParityReport",
    "compare_embeddings",
    "load_report",
    "parity_report",
    "run_tflite",
    "saved_model",
    "tflite",
]

#: Output name of both signatures.
OUTPUT_NAME = "embedding"
#: Input name of `serving_default` (float images).
IMAGES_INPUT_NAME = "images"
#: Input name of `serving_bytes` (encoded images). The `_bytes` suffix is what REST
#: front ends (TF Serving, Vertex AI) key base64 decoding on.
BYTES_INPUT_NAME = "image_bytes"
BYTES_SIGNATURE = "serving_bytes"
REPORT_NAME = "tfcontrast_parity.json"

#: Parity thresholds by quantization: (minimum cosine over the sample, minimum top-1
#: neighbour agreement). The cosine threshold applies to the *minimum* over the sample.
THRESHOLDS: dict[str, tuple[float, float]] = {
    "float32": (0.9999, 0.99),
    "float16": (0.999, 0.95),
    "dynamic": (0.98, 0.95),
    "int8": (0.98, 0.95),
}
_QUANTIZATIONS = (None, "float32", "float16", "dynamic", "int8")


class ParityError(RuntimeError):
    """An exported model disagrees with the Keras model; `.report` says by how much."""

    def __init__(self, message: str, report: ParityReport):
        super().__init__(message)
        self.report = report


@dataclasses.dataclass
class ParityReport:
    """How closely an exported model reproduces the Keras embeddings.

    Attributes:
        format: `"saved_model"` or `"tflite"`.
        quantization: `"float32"`, `"float16"`, `"dynamic"` or `"int8"`.
        samples: number of images compared.
        cosine_min, cosine_mean: cosine similarity between exported and reference
            embeddings of the same image (minimum and mean over the sample).
        top1_agreement: fraction of sample images whose nearest other sample image
            (cosine) is the same under both embeddings.
        min_cosine, min_top1: thresholds applied (`cosine_min >= min_cosine` and
            `top1_agreement >= min_top1`).
        passed: whether all thresholds are met.
        path: where the export was put (`None` when it failed).
        details: further numbers (e.g. the `serving_bytes` check) and metadata.
    """

    format: str
    quantization: str
    samples: int
    cosine_min: float
    cosine_mean: float
    top1_agreement: float
    min_cosine: float
    min_top1: float
    passed: bool
    path: str | None = None
    details: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=_json_default)

    def summary(self) -> str:
        status = "passed" if self.passed else "FAILED"
        return (
            f"{self.format} {self.quantization}: cosine min {self.cosine_min:.6f} "
            f"(>= {self.min_cosine}), mean {self.cosine_mean:.6f}, top-1 agreement "
            f"{self.top1_agreement:.3f} (>= {self.min_top1}) on {self.samples} images: {status}"
        )


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# -- parity ------------------------------------------------------------------------


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _top1_neighbours(unit: np.ndarray) -> np.ndarray:
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    return np.argmax(sims, axis=1)


def compare_embeddings(
    reference,
    exported,
    *,
    quantization: str | None = None,
    min_cosine: float | None = None,
    min_top1: float | None = None,
    format: str = "unknown",
) -> ParityReport:
    """Parity of `exported` embeddings against `reference` embeddings of the same images.

    Both are `(N, D)` arrays (normalized here, so raw embeddings work too). Reports the
    per-image cosine similarity (min and mean) and the fraction of images whose top-1
    neighbour among the other `N - 1` images is the same under both embeddings.

    Args:
        reference: `(N, D)` embeddings of the Keras model (the truth).
        exported: `(N, D)` embeddings of the exported model.
        quantization: selects the default thresholds from `THRESHOLDS`.
        min_cosine: threshold on the minimum cosine (overrides the default).
        min_top1: threshold on top-1 agreement (overrides the default).
        format: label stored in the report.

    Returns:
        A `ParityReport` (`passed` says whether the thresholds are met; nothing raises).
    """
    quantization = _check_quantization(quantization)
    reference = np.asarray(reference)
    exported = np.asarray(exported)
    if reference.shape != exported.shape or reference.ndim != 2 or len(reference) == 0:
        raise ValueError(
            "compare_embeddings: `reference` and `exported` must be non-empty (N, D) arrays of "
            f"one shape; received {reference.shape} and {exported.shape}."
        )
    default_cos, default_top1 = THRESHOLDS[quantization]
    min_cosine = default_cos if min_cosine is None else float(min_cosine)
    min_top1 = default_top1 if min_top1 is None else float(min_top1)
    ref_unit, exp_unit = _l2_normalize(reference), _l2_normalize(exported)
    finite = bool(np.all(np.isfinite(exported)))
    cosine = np.sum(ref_unit * exp_unit, axis=1) if finite else np.full(len(ref_unit), -1.0)
    if len(reference) >= 2:
        top1 = float(np.mean(_top1_neighbours(ref_unit) == _top1_neighbours(exp_unit)))
    else:
        top1 = 1.0
    cosine_min, cosine_mean = float(np.min(cosine)), float(np.mean(cosine))
    return ParityReport(
        format=format,
        quantization=quantization,
        samples=int(len(reference)),
        cosine_min=cosine_min,
        cosine_mean=cosine_mean,
        top1_agreement=top1,
        min_cosine=min_cosine,
        min_top1=min_top1,
        passed=bool(finite and cosine_min >= min_cosine and top1 >= min_top1),
    )


def _check_quantization(quantization):
    if quantization not in _QUANTIZATIONS:
        raise ValueError(
            f"`quantization` must be one of None, 'float16', 'dynamic', 'int8'; received "
            f"{quantization!r}."
        )
    return quantization or "float32"


# -- models and inputs -------------------------------------------------------------


def _known_shape(shape) -> tuple | None:
    if shape is None:
        return None
    shape = tuple(None if d is None else int(d) for d in shape)
    return shape


def _image_shape(model, input_shape) -> tuple[int, int, int]:
    """The `(H, W, C)` a model takes, from `input_shape` or the model itself."""
    how = (
        "Pass `input_shape=(H, W, C)` to the export, or build the model with a known input "
        "shape (e.g. `keras.Input((32, 32, 3))` as its first layer, or call "
        "`model.build((None, H, W, C))` / run it once on a batch)."
    )
    shape = None
    if input_shape is not None:
        shape = _known_shape(input_shape)
        if len(shape) == 4:
            shape = shape[1:]
    else:
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
        shape = _known_shape(candidates[0]) if candidates else None
    if shape is None:
        raise ValueError(f"export: the model has no known input shape. {how}")
    if len(shape) != 3 or any(d is None or d <= 0 for d in shape):
        raise ValueError(
            f"export: `input_shape` must be a fully known image shape (H, W, C); the model "
            f"gives {shape}. {how}"
        )
    if shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"export: images must have 1, 3 or 4 channels to be decoded from bytes; "
            f"`input_shape` is {shape}."
        )
    return shape


def _check_images(data, image_shape, argument: str, *, batch=None) -> np.ndarray:
    """`data` as a float32 `(N, H, W, C)` array, or a ValueError naming `argument`."""
    if isinstance(data, tf.data.Dataset):
        data = _dataset_to_array(data, image_shape, argument, batch)
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
    if array.ndim == 3 and tuple(array.shape) == tuple(image_shape):
        array = array[None]
    if array.ndim != 4 or tuple(array.shape[1:]) != tuple(image_shape) or len(array) == 0:
        raise ValueError(
            f"`{argument}` must have shape (N, {', '.join(map(str, image_shape))}) to match "
            f"the model input; received shape {tuple(array.shape)}."
        )
    if batch is not None:
        array = array[:batch]
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{argument}` contains NaN or infinite values.")
    return array.astype(np.float32)


def _dataset_to_array(dataset, image_shape, argument, limit):
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
            f"{tuple(image_shape)}; the dataset yields shape {spec.shape}."
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


def _default_sample(image_shape, pixel_scale, n=64):
    rng = np.random.default_rng(0)
    high = 255.0 * float(pixel_scale)
    return rng.uniform(0.0, high, size=(n,) + tuple(image_shape)).astype(np.float32)


def _keras_embeddings(model, preprocessing, images, batch_size=256) -> np.ndarray:
    outputs = []
    for start in range(0, len(images), batch_size):
        x = tf.convert_to_tensor(images[start : start + batch_size])
        if preprocessing is not None:
            x = preprocessing(x)
        y = model(x, training=False)
        outputs.append(keras.ops.convert_to_numpy(keras.ops.cast(y, "float32")))
    return _l2_normalize(np.concatenate(outputs)).astype(np.float32)


def _ensure_built(model, image_shape) -> None:
    """Builds an unbuilt model by running it once (ExportArchive needs its variables)."""
    if not model.built:
        model(tf.zeros((1,) + tuple(image_shape)), training=False)


def _prepare_preprocessing(preprocessing, image_shape):
    if preprocessing is None:
        return None
    if not callable(preprocessing):
        raise ValueError(
            f"`preprocessing` must be a callable or Keras layer; received "
            f"{type(preprocessing).__name__}."
        )
    if isinstance(preprocessing, keras.layers.Layer) and not preprocessing.built:
        preprocessing(tf.zeros((1,) + tuple(image_shape)))
    return preprocessing


# -- SavedModel ----------------------------------------------------------------------


def _embedding_fn(model, preprocessing, image_shape):
    def embed(images):
        x = tf.cast(images, tf.float32)
        if preprocessing is not None:
            x = preprocessing(x)
        y = model(x, training=False)
        if isinstance(y, (dict, list, tuple)):
            raise ValueError(
                "export: the model must return one embedding tensor (B, D) for images "
                f"(B, {', '.join(map(str, image_shape))}); it returned a {type(y).__name__}."
            )
        if len(y.shape) != 2:
            raise ValueError(
                "export: the model must return embeddings (B, D); it returns shape "
                f"{tuple(y.shape)}. Add pooling/flattening to the model."
            )
        y = tf.cast(y, tf.float32)
        return {OUTPUT_NAME: tf.math.l2_normalize(y, axis=-1)}

    return embed


def _bytes_fn(embed, image_shape, pixel_scale):
    height, width, channels = image_shape

    def decode(encoded):
        image = tf.io.decode_image(
            encoded, channels=channels, dtype=tf.uint8, expand_animations=False
        )
        image = tf.image.resize(tf.cast(image, tf.float32), (height, width), method="bilinear")
        return tf.ensure_shape(image, image_shape)

    def embed_bytes(image_bytes):
        images = tf.map_fn(
            decode,
            image_bytes,
            fn_output_signature=tf.TensorSpec(image_shape, tf.float32),
        )
        return embed(images * tf.constant(pixel_scale, tf.float32))

    return embed_bytes


def _write_archive(model, preprocessing, image_shape, pixel_scale, directory, with_bytes):
    archive = keras.export.ExportArchive()
    archive.track(model)
    if isinstance(preprocessing, keras.layers.Layer):
        archive.track(preprocessing)
    embed = _embedding_fn(model, preprocessing, image_shape)
    archive.add_endpoint(
        "serving_default",
        embed,
        input_signature=[
            tf.TensorSpec((None,) + tuple(image_shape), tf.float32, name=IMAGES_INPUT_NAME)
        ],
    )
    if with_bytes:
        archive.add_endpoint(
            BYTES_SIGNATURE,
            _bytes_fn(embed, image_shape, pixel_scale),
            input_signature=[tf.TensorSpec((None,), tf.string, name=BYTES_INPUT_NAME)],
        )
    archive.write_out(str(directory), verbose=False)


def _run_signature(signature, array, batch_size=256) -> np.ndarray:
    (name,) = signature.structured_input_signature[1].keys()
    outputs = []
    for start in range(0, len(array), batch_size):
        result = signature(**{name: tf.constant(array[start : start + batch_size])})
        outputs.append(result[OUTPUT_NAME].numpy())
    return np.concatenate(outputs)


def _encode_png(images_uint8) -> list[bytes]:
    return [tf.io.encode_png(image).numpy() for image in images_uint8]


def _next_version(base: Path) -> int:
    versions = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def _check_version(version) -> int:
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
        raise ValueError(f"`version` must be a non-negative integer or None; received {version!r}.")
    return int(version)


def saved_model(
    model: keras.Model,
    path: str | os.PathLike = "saved_models/model",
    version: int | None = None,
    *,
    input_shape: Sequence[int] | None = None,
    preprocessing: Callable | None = None,
    pixel_scale: float = 1.0 / 255.0,
    sample_data=None,
    min_cosine: float | None = None,
    min_top1: float | None = None,
) -> ParityReport:
    """Exports an embedding model as a SavedModel laid out for TF Serving.

    Writes `path/VERSION/` (`VERSION` = the next integer when not given) with the
    signatures `serving_default` (float images -> `embedding`) and `serving_bytes`
    (encoded images -> `embedding`); see the module docstring. The export is written to
    a temporary directory inside `path`, loaded back with `tf.saved_model.load`, checked
    for parity against `model` on `sample_data` (both signatures), and only then renamed
    to `path/VERSION`. On any failure nothing is left behind.

    Args:
        model: a Keras model mapping images `(B, H, W, C)` to embeddings `(B, D)`, e.g. a
            `tfcontrast.models.ContrastiveModel` (whose `call` serves the embedding; its
            `augmentation` only runs in training).
        path: the model's base directory (`saved_models/NAME`).
        version: the version number; an existing version is never overwritten.
        input_shape: `(H, W, C)`, when the model does not know it.
        preprocessing: callable or Keras layer applied to the float images before the
            model in both signatures (the preprocessing the model was trained with).
        pixel_scale: factor from decoded `uint8` pixels to the model's input convention
            in `serving_bytes` (1/255: [0, 1]; 1.0 for models that take [0, 255]).
        sample_data: float images `(N, H, W, C)` (array or `tf.data.Dataset`) for the
            parity check; uniform random pixels when `None` (real images are better).
        min_cosine, min_top1: parity thresholds (defaults: `THRESHOLDS["float32"]`).

    Returns:
        The `ParityReport` (also at `path/VERSION/assets.extra/tfcontrast_parity.json`).

    Raises:
        ValueError: bad arguments, e.g. no known input shape or bad `sample_data`.
        FileExistsError: `path/VERSION` exists.
        ParityError: the SavedModel disagrees with the Keras model.
    """
    image_shape = _image_shape(model, input_shape)
    if not (isinstance(pixel_scale, (int, float)) and pixel_scale > 0):
        raise ValueError(f"`pixel_scale` must be a positive number; received {pixel_scale!r}.")
    if version is not None:
        version = _check_version(version)
    preprocessing = _prepare_preprocessing(preprocessing, image_shape)
    _ensure_built(model, image_shape)
    sample = (
        _default_sample(image_shape, pixel_scale)
        if sample_data is None
        else _check_images(sample_data, image_shape, "sample_data", batch=512)
    )
    base = Path(path)
    if base.exists() and not base.is_dir():
        raise ValueError(f"`path` must be a directory; {str(base)!r} is a file.")
    if version is not None and (base / str(version)).exists():
        raise FileExistsError(
            f"saved_model: version {version} exists at {str(base / str(version))!r}; "
            "versions are never overwritten. Pass another `version=` or None for the next one."
        )
    created = _missing_dirs(base)
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-export-", dir=base))
    try:
        export_dir = tmp / "model"
        start = time.perf_counter()
        _write_archive(model, preprocessing, image_shape, pixel_scale, export_dir, True)
        loaded = tf.saved_model.load(str(export_dir))
        reference = _keras_embeddings(model, preprocessing, sample)
        exported = _run_signature(loaded.signatures["serving_default"], sample)
        report = compare_embeddings(
            reference,
            exported,
            min_cosine=min_cosine,
            min_top1=min_top1,
            format="saved_model",
        )
        # The bytes signature on the same images, quantized to 8-bit PNGs.
        pixels = np.clip(np.round(sample / pixel_scale), 0, 255).astype(np.uint8)
        bytes_reference = _keras_embeddings(
            model, preprocessing, pixels.astype(np.float32) * np.float32(pixel_scale)
        )
        bytes_exported = _run_signature(
            loaded.signatures[BYTES_SIGNATURE], np.array(_encode_png(pixels), dtype=object)
        )
        bytes_report = compare_embeddings(
            bytes_reference, bytes_exported, min_cosine=min_cosine, min_top1=min_top1
        )
        report.details.update(
            {
                "serving_bytes": {
                    "cosine_min": bytes_report.cosine_min,
                    "cosine_mean": bytes_report.cosine_mean,
                    "top1_agreement": bytes_report.top1_agreement,
                    "passed": bytes_report.passed,
                },
                "signatures": {
                    "serving_default": {
                        "inputs": {IMAGES_INPUT_NAME: ["float32", [None, *image_shape]]},
                        "outputs": {OUTPUT_NAME: ["float32", [None, int(exported.shape[1])]]},
                    },
                    BYTES_SIGNATURE: {
                        "inputs": {BYTES_INPUT_NAME: ["string", [None]]},
                        "outputs": {OUTPUT_NAME: ["float32", [None, int(exported.shape[1])]]},
                    },
                },
                "input_shape": list(image_shape),
                "pixel_scale": float(pixel_scale),
                "preprocessing": None if preprocessing is None else _describe(preprocessing),
                "model": getattr(model, "name", type(model).__name__),
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "export_seconds": round(time.perf_counter() - start, 3),
            }
        )
        del loaded
        report.passed = report.passed and bytes_report.passed
        if not report.passed:
            raise ParityError(
                f"saved_model: parity check failed, nothing exported. {report.summary()}; "
                f"serving_bytes cosine min {bytes_report.cosine_min:.6f}.",
                report,
            )
        if version is None:
            version = _next_version(base)
        target = base / str(version)
        if target.exists():
            raise FileExistsError(
                f"saved_model: version {version} appeared at {str(target)!r} during the "
                "export; versions are never overwritten."
            )
        report.path = str(target)
        report.details["version"] = version
        extra = export_dir / "assets.extra"
        extra.mkdir(exist_ok=True)
        (extra / REPORT_NAME).write_text(report.to_json())
        os.rename(export_dir, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_if_empty(created)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    logger.info("Exported %s: %s", target, report.summary())
    return report


def _missing_dirs(directory: Path) -> list[Path]:
    """`directory` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    return missing


def _remove_if_empty(directories: list[Path]) -> None:
    """Removes directories an export created, deepest first, as long as they are empty."""
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:
            return


def _describe(obj) -> str:
    if isinstance(obj, keras.layers.Layer):
        return f"{type(obj).__name__}({obj.name})"
    return getattr(obj, "__qualname__", type(obj).__name__)


# -- TFLite --------------------------------------------------------------------------


def _litert_interpreter(path, num_threads=2):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Checking TFLite files needs `ai-edge-litert`: pip install 'tfcontrast[export]' "
            "(or pip install ai-edge-litert)."
        ) from error
    return Interpreter(model_path=str(path), num_threads=num_threads)


def run_tflite(path, images, num_threads: int = 2, batch_size: int = 64) -> np.ndarray:
    """Embeddings of float `images` `(N, H, W, C)` from a TFLite file (ai-edge-litert).

    Quantizes inputs and dequantizes outputs of int8/uint8 models with the scales stored
    in the file, so float and integer-I/O models are called alike.
    """
    interpreter = _litert_interpreter(path, num_threads)
    runner = interpreter.get_signature_runner("serving_default")
    (in_name,) = runner.get_input_details().keys()
    in_detail = runner.get_input_details()[in_name]
    out_details = runner.get_output_details()
    out_name = OUTPUT_NAME if OUTPUT_NAME in out_details else next(iter(out_details))
    out_detail = out_details[out_name]
    images = np.asarray(images, np.float32)
    outputs = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size]
        x = _quantize(x, in_detail)
        y = runner(**{in_name: x})[out_name]
        outputs.append(_dequantize(y, out_detail))
    return np.concatenate(outputs)


def _quantize(x, detail):
    dtype = detail["dtype"]
    if dtype in (np.int8, np.uint8):
        scale, zero = detail["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
    return x.astype(dtype)


def _dequantize(y, detail):
    if detail["dtype"] in (np.int8, np.uint8):
        scale, zero = detail["quantization"]
        return (y.astype(np.float32) - zero) * scale
    return y.astype(np.float32)


def _int8_float_normalization(converter, representative_dataset) -> bytes:
    """Full-integer model whose final L2 normalization runs in float.

    The int8 `L2_NORMALIZATION` op writes unit vectors on a 1/128 grid, which alone
    costs about 3% of top-1 neighbour agreement on digits; normalizing the dequantized
    embedding in float (a single `(B, D)` op) removes that error at no measurable cost.
    Uses TensorFlow's selective quantization (`QuantizationDebugger` with a denylist).
    """
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
        tf.lite.OpsSet.TFLITE_BUILTINS,
    ]
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=["L2_NORMALIZATION"])
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=representative_dataset, debug_options=options
    )
    return debugger.get_nondebug_quantized_model()


def tflite(
    model_or_saved_model,
    path: str | os.PathLike,
    quantization: str | None = None,
    representative_data=None,
    *,
    input_shape: Sequence[int] | None = None,
    preprocessing: Callable | None = None,
    sample_data=None,
    integer_io: bool = False,
    num_representative: int = 300,
    min_cosine: float | None = None,
    min_top1: float | None = None,
    overwrite: bool = False,
) -> ParityReport:
    """Converts an embedding model to TFLite and checks it with ai-edge-litert.

    The TFLite model has one signature, `serving_default`: float images `(B, H, W, C)`
    (batch 1 by default, resizable) -> `embedding`, L2-normalized, with `preprocessing`
    baked in (when converting a Keras model).

    Quantization:

    - `None`: float32.
    - `"float16"`: float16 weights (about half the size), float compute on most CPUs.
    - `"dynamic"`: int8 weights, activations quantized on the fly (no data needed).
    - `"int8"`: full-integer: weights and activations int8, calibrated on
      `representative_data`. Input and output stay float32 by default (a quantize op at
      the input; the embedding is dequantized and L2-normalized in float, one `(B, D)`
      op), so callers feed the same float images as to the float models. The int8
      normalization would write unit vectors on a 1/128 grid, which on digits costs
      about 3 points of top-1 neighbour agreement (0.946 vs 0.973). `integer_io=True`
      makes the whole graph integer, input and output int8 (Edge TPU,
      microcontrollers); scale and zero point are in the interpreter's input/output
      details, and parity is lower (pass `min_top1=` if your data needs it).

    Args:
        model_or_saved_model: a Keras model (as for `saved_model`) or the path of a
            SavedModel directory with a `serving_default` signature (e.g. written by
            `saved_model`; then parity is checked against that SavedModel).
        path: the `.tflite` file to write (atomically: a temporary file renamed into
            place after the parity check). The report goes to `<stem>.parity.json`.
        quantization: `None`, `"float16"`, `"dynamic"` or `"int8"`.
        representative_data: float images `(N, H, W, C)` as the model receives them
            (array or `tf.data.Dataset` of images or `(images, labels)`), required for
            `"int8"`; the first `num_representative` are used.
        input_shape: `(H, W, C)`, when the model does not know it.
        preprocessing: callable or Keras layer baked in before the model (Keras models).
        sample_data: images for the parity check; defaults to `representative_data`, else
            uniform random pixels in [0, 1].
        integer_io: int8 input and output for `"int8"` (see above).
        num_representative: how many representative images calibrate `"int8"` (300:
            more gave no gain on digits).
        min_cosine, min_top1: parity thresholds (defaults: `THRESHOLDS[quantization]`).
        overwrite: replace an existing file at `path`.

    Returns:
        The `ParityReport`.

    Raises:
        ValueError: bad arguments (quantization, representative data shape or dtype, no
            known input shape).
        FileExistsError: `path` exists and `overwrite` is False.
        ParityError: the TFLite model disagrees with the reference.
    """
    quant = _check_quantization(quantization)
    if integer_io and quant != "int8":
        raise ValueError("`integer_io=True` needs `quantization='int8'`.")
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"tflite: {str(path)!r} exists; pass `overwrite=True` to replace it.")
    if path.exists() and path.is_dir():
        raise ValueError(f"`path` must be a file path; {str(path)!r} is a directory.")
    from_keras = isinstance(model_or_saved_model, keras.layers.Layer)
    if not from_keras:
        source = Path(model_or_saved_model)
        if not (source / "saved_model.pb").exists():
            raise ValueError(
                "`model_or_saved_model` must be a Keras model or a SavedModel directory; "
                f"{str(source)!r} has no saved_model.pb."
            )
        if preprocessing is not None:
            raise ValueError(
                "`preprocessing` applies to Keras models only; a SavedModel has its own."
            )
    work = Path(
        tempfile.mkdtemp(prefix=".tmp-tflite-", dir=path.parent if path.parent.exists() else None)
    )
    created: list[Path] = []
    try:
        if from_keras:
            model = model_or_saved_model
            image_shape = _image_shape(model, input_shape)
            preprocessing = _prepare_preprocessing(preprocessing, image_shape)
            _ensure_built(model, image_shape)
            source = work / "saved_model"
        else:
            loaded = tf.saved_model.load(str(source))
            if "serving_default" not in loaded.signatures:
                raise ValueError(
                    f"`model_or_saved_model`: {str(source)!r} has no serving_default signature."
                )
            signature = loaded.signatures["serving_default"]
            (spec,) = signature.structured_input_signature[1].values()
            image_shape = _image_shape(None, input_shape or tuple(spec.shape)[1:])
        representative = None
        if quant == "int8":
            if representative_data is None:
                raise ValueError(
                    "`representative_data` is required for quantization='int8': a few hundred "
                    "float images (N, H, W, C) like the model's inputs."
                )
        if representative_data is not None:
            representative = _check_images(
                representative_data, image_shape, "representative_data", batch=num_representative
            )
        if sample_data is not None:
            sample = _check_images(sample_data, image_shape, "sample_data", batch=512)
        elif representative is not None:
            sample = representative
        else:
            sample = _default_sample(image_shape, 1.0 / 255.0)
        if from_keras:
            _write_archive(model, preprocessing, image_shape, 1.0 / 255.0, source, False)
            reference = _keras_embeddings(model, preprocessing, sample)
        else:
            reference = _l2_normalize(_run_signature(signature, sample))
        converter = tf.lite.TFLiteConverter.from_saved_model(
            str(source), signature_keys=["serving_default"]
        )
        if quant == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quant == "dynamic":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif quant == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]

            def representative_dataset():
                for image in representative:
                    yield {IMAGES_INPUT_NAME: image[None]}

            converter.representative_dataset = representative_dataset
            if integer_io:
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
        try:
            if quant == "int8" and not integer_io:
                flatbuffer = _int8_float_normalization(converter, representative_dataset)
            else:
                flatbuffer = converter.convert()
        except Exception as error:
            raise RuntimeError(f"tflite: conversion failed ({quant}): {error}") from error
        candidate = work / "model.tflite"
        candidate.write_bytes(flatbuffer)
        exported = run_tflite(candidate, sample)
        report = compare_embeddings(
            reference,
            exported,
            quantization=quantization,
            min_cosine=min_cosine,
            min_top1=min_top1,
            format="tflite",
        )
        report.details.update(
            {
                "bytes": len(flatbuffer),
                "integer_io": bool(integer_io),
                "input_shape": list(image_shape),
                "representative_images": None if representative is None else len(representative),
                "reference": "keras" if from_keras else str(source),
                "tensorflow": tf.__version__,
            }
        )
        if not report.passed:
            raise ParityError(
                f"tflite: parity check failed, nothing written. {report.summary()}.", report
            )
        created = _missing_dirs(path.parent)
        path.parent.mkdir(parents=True, exist_ok=True)
        report.path = str(path)
        report_path = path.with_suffix(".parity.json")
        tmp_report = work / "report.json"
        tmp_report.write_text(report.to_json())
        final_tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
        shutil.move(str(candidate), final_tmp)  # same filesystem as `path` from here on
        os.replace(final_tmp, path)
        shutil.move(str(tmp_report), report_path)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        _remove_if_empty(created)
        raise
    shutil.rmtree(work, ignore_errors=True)
    logger.info("Exported %s: %s", path, report.summary())
    return report


# -- checking an existing export ----------------------------------------------------


def parity_report(
    model: keras.Model,
    exported_path: str | os.PathLike,
    images,
    *,
    quantization: str | None = None,
    preprocessing: Callable | None = None,
    input_shape: Sequence[int] | None = None,
    min_cosine: float | None = None,
    min_top1: float | None = None,
) -> ParityReport:
    """Parity of an existing export (SavedModel directory or `.tflite` file) with `model`.

    Runs `images` through the Keras model (with `preprocessing`) and through the export
    (`serving_default`), and compares them with `compare_embeddings`. Does not raise on a
    failed check; read `report.passed`.
    """
    image_shape = _image_shape(model, input_shape)
    images = _check_images(images, image_shape, "images", batch=None)
    preprocessing = _prepare_preprocessing(preprocessing, image_shape)
    reference = _keras_embeddings(model, preprocessing, images)
    exported_path = Path(exported_path)
    if exported_path.is_dir():
        loaded = tf.saved_model.load(str(exported_path))
        exported = _run_signature(loaded.signatures["serving_default"], images)
        fmt = "saved_model"
    elif exported_path.suffix == ".tflite" and exported_path.exists():
        exported = run_tflite(exported_path, images)
        fmt = "tflite"
    else:
        raise ValueError(
            f"`exported_path` must be a SavedModel directory or a .tflite file; received "
            f"{str(exported_path)!r}."
        )
    report = compare_embeddings(
        reference,
        exported,
        quantization=quantization,
        min_cosine=min_cosine,
        min_top1=min_top1,
        format=fmt,
    )
    report.path = str(exported_path)
    return report


def load_report(path: str | os.PathLike) -> dict:
    """The parity report stored with an export (version directory or `.tflite` file)."""
    path = Path(path)
    candidate = (
        path / "assets.extra" / REPORT_NAME if path.is_dir() else path.with_suffix(".parity.json")
    )
    return json.loads(candidate.read_text())
