"""Checking an export that already exists: its parity with a Keras model now, and the
report stored with it when it was published."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import tensorflow as tf

from tfcontrast.export import _checks, _parity, _publish, _signatures
from tfcontrast.export._parity import ParityReport
from tfcontrast.export._tflite import run_tflite


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
    image_shape = _checks.image_shape(model, input_shape)
    images = _checks.check_images(images, image_shape, "images", batch=None)
    preprocessing = _checks.prepare_preprocessing(preprocessing, image_shape)
    reference = _parity.reference_embeddings(model, preprocessing, images)
    exported_path = Path(exported_path)
    if exported_path.is_dir():
        loaded = tf.saved_model.load(str(exported_path))
        exported = _signatures.run_signature(loaded.signatures["serving_default"], images)
        fmt = "saved_model"
    elif exported_path.suffix == ".tflite" and exported_path.exists():
        exported = run_tflite(exported_path, images)
        fmt = "tflite"
    else:
        raise ValueError(
            f"`exported_path` must be a SavedModel directory or a .tflite file; received "
            f"{str(exported_path)!r}."
        )
    report = _parity.compare_embeddings(
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
    if path.is_dir():
        return json.loads(_publish.saved_model_report_path(path).read_text())
    return json.loads(_publish.tflite_report_path(path).read_text())
