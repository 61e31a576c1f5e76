"""Parity maths: how closely an export reproduces the Keras embeddings.

The reference embeddings come from the Keras model (`reference_embeddings`); the
comparison (`compare_embeddings`) is plain NumPy: per-image cosine similarity and the
agreement of each image's top-1 neighbour among the others.
"""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import tensorflow as tf

from tfcontrast._normalization import l2_normalize_numpy

#: Parity thresholds by quantization: (minimum cosine over the sample, minimum top-1
#: neighbour agreement). The cosine threshold applies to the *minimum* over the sample.
THRESHOLDS: dict[str, tuple[float, float]] = {
    "float32": (0.9999, 0.99),
    "float16": (0.999, 0.95),
    "dynamic": (0.98, 0.95),
    "int8": (0.98, 0.95),
}
QUANTIZATIONS = (None, "float32", "float16", "dynamic", "int8")


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


def check_quantization(quantization) -> str:
    """The quantization's name (`None` is `"float32"`), or a ValueError."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"`quantization` must be one of None, 'float16', 'dynamic', 'int8'; received "
            f"{quantization!r}."
        )
    return quantization or "float32"


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of `x` (flattened to `(N, D)`) as float64 unit vectors."""
    return l2_normalize_numpy(np.asarray(x, np.float64).reshape(len(x), -1))


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
    quantization = check_quantization(quantization)
    reference = np.asarray(reference)
    exported = np.asarray(exported)
    if reference.shape != exported.shape or reference.ndim != 2 or len(reference) == 0:
        raise ValueError(
            "compare_embeddings: `reference` and `exported` must be non-empty (N, D) arrays of "
            f"one shape; received {reference.shape} and {exported.shape}."
        )
    min_cosine, min_top1 = thresholds(quantization, min_cosine, min_top1)
    ref_unit, exp_unit = l2_normalize(reference), l2_normalize(exported)
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


def thresholds(quantization: str, min_cosine, min_top1) -> tuple[float, float]:
    """`(min_cosine, min_top1)`: the given values, else the defaults of `quantization`."""
    default_cos, default_top1 = THRESHOLDS[quantization]
    return (
        default_cos if min_cosine is None else float(min_cosine),
        default_top1 if min_top1 is None else float(min_top1),
    )


def failed_report(
    *, format: str, quantization, samples: int, min_cosine=None, min_top1=None, **details
) -> ParityReport:
    """The report of an export that gave no embeddings to compare: it did not pass."""
    quantization = check_quantization(quantization)
    min_cosine, min_top1 = thresholds(quantization, min_cosine, min_top1)
    return ParityReport(
        format=format,
        quantization=quantization,
        samples=int(samples),
        cosine_min=-1.0,
        cosine_mean=-1.0,
        top1_agreement=0.0,
        min_cosine=min_cosine,
        min_top1=min_top1,
        passed=False,
        details=details,
    )


def reference_embeddings(model, preprocessing, images, batch_size=256) -> np.ndarray:
    """The Keras model's L2-normalized float32 embeddings of `images` (the truth)."""
    outputs = []
    for start in range(0, len(images), batch_size):
        x = tf.convert_to_tensor(images[start : start + batch_size])
        if preprocessing is not None:
            x = preprocessing(x)
        y = model(x, training=False)
        outputs.append(keras.ops.convert_to_numpy(keras.ops.cast(y, "float32")))
    return l2_normalize(np.concatenate(outputs)).astype(np.float32)
