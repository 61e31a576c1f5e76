"""TFLite: conversion (float32, float16, dynamic-range and full-integer int8) and the
ai-edge-litert interpreter that checks and runs the files."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfcontrast.export import _checks, _parity, _publish, _signatures
from tfcontrast.export._parity import ParityError, ParityReport
from tfcontrast.export._signatures import IMAGES_INPUT_NAME, OUTPUT_NAME

logger = logging.getLogger("tfcontrast")


def litert_interpreter(path, num_threads=2):
    """An `ai_edge_litert` interpreter of the TFLite file at `path`."""
    from ai_edge_litert.interpreter import Interpreter  # a dependency of tfcontrast

    return Interpreter(model_path=str(path), num_threads=num_threads)


def run_tflite(path, images, num_threads: int = 2, batch_size: int = 64) -> np.ndarray:
    """Embeddings of float `images` `(N, H, W, C)` from a TFLite file (ai-edge-litert).

    Quantizes inputs and dequantizes outputs of int8/uint8 models with the scales stored
    in the file, so float and integer-I/O models are called alike.
    """
    interpreter = litert_interpreter(path, num_threads)
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


def _convert(source: Path, quant: str, representative, integer_io: bool) -> bytes:
    """The TFLite flatbuffer of the `serving_default` signature of the SavedModel `source`."""
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(source), signature_keys=["serving_default"]
    )
    if quant in ("float16", "dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quant != "int8":
        return converter.convert()
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]

    def representative_dataset():
        for image in representative:
            yield {IMAGES_INPUT_NAME: image[None]}

    converter.representative_dataset = representative_dataset
    if not integer_io:
        return _int8_float_normalization(converter, representative_dataset)
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def _unusable(quant: str, stage: str, error: Exception, samples: int, limits: dict):
    """The ParityError of a model that could not be converted or run: nothing to compare.

    Reduced-precision conversion fails on some ops and on weights or activations far out
    of range (outliers), and LiteRT refuses some of the files it writes; either way the
    export does not reproduce the model, and another quantization may.
    """
    what = (
        "could not be converted"
        if stage == "convert"
        else "was converted, but LiteRT could not run it"
    )
    others = ", ".join(repr(q) for q in ("dynamic", "float16", None) if (q or "float32") != quant)
    report = _parity.failed_report(
        format="tflite",
        samples=samples,
        stage=stage,
        error=f"{type(error).__name__}: {error}",
        **limits,
    )
    return ParityError(
        f"tflite: the {quant} model {what}; nothing written ({type(error).__name__}: {error}). "
        f"Try another quantization: quantization={others}.",
        report,
    )


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
        ParityError: the TFLite model disagrees with the reference, a quantized
            conversion fails, or LiteRT cannot run the file (then `report.details` has
            `stage`, `"convert"` or `"run"`, and `error`). A file published before at
            `path` is left as it was.
        RuntimeError: a float32 conversion fails (the model has an op TFLite lacks).
    """
    quant = _parity.check_quantization(quantization)
    limits = {"quantization": quantization, "min_cosine": min_cosine, "min_top1": min_top1}
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
    with _publish.Staging(path.parent, _publish.TFLITE_STAGING) as staging:
        if from_keras:
            model = model_or_saved_model
            image_shape = _checks.image_shape(model, input_shape)
            preprocessing = _checks.prepare_preprocessing(preprocessing, image_shape)
            _checks.ensure_built(model, image_shape)
            source = staging.path / "saved_model"
        else:
            loaded = tf.saved_model.load(str(source))
            if "serving_default" not in loaded.signatures:
                raise ValueError(
                    f"`model_or_saved_model`: {str(source)!r} has no serving_default signature."
                )
            signature = loaded.signatures["serving_default"]
            (spec,) = signature.structured_input_signature[1].values()
            image_shape = _checks.image_shape(None, input_shape or tuple(spec.shape)[1:])
        if quant == "int8" and representative_data is None:
            raise ValueError(
                "`representative_data` is required for quantization='int8': a few hundred "
                "float images (N, H, W, C) like the model's inputs."
            )
        representative = None
        if representative_data is not None:
            representative = _checks.check_images(
                representative_data, image_shape, "representative_data", batch=num_representative
            )
        if sample_data is not None:
            sample = _checks.check_images(sample_data, image_shape, "sample_data", batch=512)
        elif representative is not None:
            sample = representative
        else:
            sample = _checks.default_sample(image_shape, 1.0 / 255.0)
        if from_keras:
            _signatures.write_archive(model, preprocessing, image_shape, 1.0 / 255.0, source, False)
            reference = _parity.reference_embeddings(model, preprocessing, sample)
        else:
            reference = _parity.l2_normalize(_signatures.run_signature(signature, sample))
        try:
            flatbuffer = _convert(source, quant, representative, integer_io)
        except Exception as error:
            if quant == "float32":  # the model itself does not convert (e.g. an op TFLite lacks)
                raise RuntimeError(f"tflite: conversion failed ({quant}): {error}") from error
            raise _unusable(quant, "convert", error, len(sample), limits) from error
        candidate = staging.path / "model.tflite"
        candidate.write_bytes(flatbuffer)
        try:
            exported = run_tflite(candidate, sample)
        except (RuntimeError, ValueError) as error:  # LiteRT: failed to prepare / invoke
            raise _unusable(quant, "run", error, len(sample), limits) from error
        report = _parity.compare_embeddings(reference, exported, format="tflite", **limits)
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
        _publish.publish_file(candidate, path, report, staging)
    logger.info("Exported %s: %s", path, report.summary())
    return report
