"""SavedModels for TF Serving: `path/VERSION/` with the `serving_default` and
`serving_bytes` signatures, checked for parity before they are published."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfcontrast.export import _checks, _parity, _publish, _signatures
from tfcontrast.export._parity import ParityError, ParityReport

logger = logging.getLogger("tfcontrast")


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
    (encoded images -> `embedding`); see `tfcontrast.export`. The export is written to
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
    image_shape = _checks.image_shape(model, input_shape)
    pixel_scale = _checks.check_pixel_scale(pixel_scale)
    if version is not None:
        version = _checks.check_version(version)
    preprocessing = _checks.prepare_preprocessing(preprocessing, image_shape)
    _checks.ensure_built(model, image_shape)
    sample = (
        _checks.default_sample(image_shape, pixel_scale)
        if sample_data is None
        else _checks.check_images(sample_data, image_shape, "sample_data", batch=512)
    )
    base = Path(path)
    if base.exists() and not base.is_dir():
        raise ValueError(f"`path` must be a directory; {str(base)!r} is a file.")
    if version is not None and (base / str(version)).exists():
        raise FileExistsError(
            f"saved_model: version {version} exists at {str(base / str(version))!r}; "
            "versions are never overwritten. Pass another `version=` or None for the next one."
        )
    with _publish.Staging(base, _publish.SAVED_MODEL_STAGING) as staging:
        export_dir = staging.path / "model"
        start = time.perf_counter()
        _signatures.write_archive(model, preprocessing, image_shape, pixel_scale, export_dir, True)
        loaded = tf.saved_model.load(str(export_dir))
        report = _check_parity(
            model, preprocessing, loaded, sample, image_shape, pixel_scale, min_cosine, min_top1
        )
        del loaded
        report.details.update(
            {
                "input_shape": list(image_shape),
                "pixel_scale": pixel_scale,
                "preprocessing": None if preprocessing is None else _checks.describe(preprocessing),
                "model": getattr(model, "name", type(model).__name__),
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "export_seconds": round(time.perf_counter() - start, 3),
            }
        )
        if not report.passed:
            raise ParityError(
                f"saved_model: parity check failed, nothing exported. {report.summary()}; "
                f"serving_bytes cosine min {report.details['serving_bytes']['cosine_min']:.6f}.",
                report,
            )
        target = _publish.publish_version(export_dir, base, version, report)
    logger.info("Exported %s: %s", target, report.summary())
    return report


def _check_parity(
    model, preprocessing, loaded, sample, image_shape, pixel_scale, min_cosine, min_top1
):
    """Parity of both signatures of the loaded SavedModel with the Keras model."""
    reference = _parity.reference_embeddings(model, preprocessing, sample)
    exported = _signatures.run_signature(loaded.signatures["serving_default"], sample)
    report = _parity.compare_embeddings(
        reference, exported, min_cosine=min_cosine, min_top1=min_top1, format="saved_model"
    )
    # The bytes signature on the same images, quantized to 8-bit PNGs.
    pixels = np.clip(np.round(sample / pixel_scale), 0, 255).astype(np.uint8)
    bytes_reference = _parity.reference_embeddings(
        model, preprocessing, pixels.astype(np.float32) * np.float32(pixel_scale)
    )
    bytes_exported = _signatures.run_signature(
        loaded.signatures[_signatures.BYTES_SIGNATURE],
        np.array(_signatures.encode_png(pixels), dtype=object),
    )
    bytes_report = _parity.compare_embeddings(
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
            "signatures": _signatures.signature_details(image_shape, exported.shape[1]),
        }
    )
    report.passed = report.passed and bytes_report.passed
    return report
