"""Deployment benchmark: TFLite file size and single-image CPU latency vs the SavedModel.

For each model, exports a SavedModel with `tfcontrast.export.saved_model` and TFLite files
with `tfcontrast.export.tflite` (float32, float16, dynamic-range int8, full-integer int8),
then measures:

- size on disk (SavedModel: `saved_model.pb` + `variables/`; TFLite: the file),
- single-image latency (batch 1): TFLite in ai-edge-litert's `Interpreter` with 2 threads
  (XNNPACK), the SavedModel's `serving_default` signature in TensorFlow with 2 intra-op
  threads; median and p90 of `--repeats` calls after warm-up, the runtimes alternating
  in rounds so that load from other processes hits all of them alike,
- the parity numbers of every export (cosine min/mean, top-1 agreement).

Targets (issue 8): int8 size <= 0.3x float32 and int8 latency <= 0.6x float32.

Models: a digits ConvNet (`backbones.small_convnet((8, 8, 1))`, trained briefly on
scikit-learn digits) and a CIFAR ResNet-18 (`backbones.cifar_resnet18((32, 32, 3))`, random
weights with BatchNorm statistics set from one batch; sample and calibration images are
uniform noise, so its parity numbers are a sanity check, not a quality claim; its
parity thresholds are relaxed so the benchmark reports rather than fails).

Usage:

    python benchmarks/bench_export.py            # 300 timed calls per runtime
    python benchmarks/bench_export.py --quick    # 60 timed calls, ResNet-18 at width 32

Writes `benchmarks/results/export.json` (`--out` to change). The machine may be shared:
the load average before and after is recorded; compare ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfcontrast import export  # noqa: E402
from tfcontrast.models import backbones  # noqa: E402

THREADS = 2
QUANTIZATIONS = (None, "float16", "dynamic", "int8")


def dir_size(path: Path) -> int:
    return sum(
        p.stat().st_size for p in path.rglob("*") if p.is_file() and "assets.extra" not in p.parts
    )


def set_batchnorm_statistics(model, images):
    """Random-weight BN layers get the moving statistics of one batch (realistic scales)."""
    bns = [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    model(images, training=True)
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum


def digits_model():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    keras.utils.set_random_seed(0)
    features = backbones.small_convnet((8, 8, 1))
    classifier = keras.Sequential([features, keras.layers.Dense(10)])
    classifier.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    classifier.fit(x[:1500], data.target[:1500], epochs=3, batch_size=32, verbose=0)
    set_batchnorm_statistics(features, x[:1500])
    return features, x[:1500], x[1500:], {}


def resnet_model(width):
    keras.utils.set_random_seed(0)
    model = backbones.cifar_resnet18((32, 32, 3), width=width)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (300, 32, 32, 3)).astype("float32")
    set_batchnorm_statistics(model, images[:128])
    return model, images, images[:128], {"min_cosine": 0.0, "min_top1": 0.0}


def time_calls(fn, repeats):
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def litert_call(path, image):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=THREADS)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    x = image.astype(inp["dtype"])

    def call():
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])

    return call


def bench_model(name, model, representative, sample, thresholds, repeats, rounds, workdir):
    print(f"[{name}] exporting", flush=True)
    entry = {"params": int(model.count_params()), "runtimes": {}}
    sm = export.saved_model(model, workdir / name, sample_data=sample, **thresholds)
    signature = tf.saved_model.load(sm.path).signatures["serving_default"]
    image = sample[:1]
    image_tensor = tf.constant(image)
    calls = {"saved_model": lambda: signature(images=image_tensor)}
    entry["runtimes"]["saved_model"] = {
        "bytes": dir_size(Path(sm.path)),
        "parity": {k: getattr(sm, k) for k in ("cosine_min", "cosine_mean", "top1_agreement")},
    }
    for quantization in QUANTIZATIONS:
        label = quantization or "float32"
        start = time.perf_counter()
        report = export.tflite(
            model,
            workdir / f"{name}_{label}.tflite",
            quantization=quantization,
            representative_data=representative,
            sample_data=sample,
            **thresholds,
        )
        print(f"[{name}] {report.summary()}", flush=True)
        calls[label] = litert_call(report.path, image)
        entry["runtimes"][label] = {
            "bytes": report.details["bytes"],
            "export_seconds": round(time.perf_counter() - start, 2),
            "parity": {
                k: getattr(report, k) for k in ("cosine_min", "cosine_mean", "top1_agreement")
            },
        }
    samples = {label: [] for label in calls}
    for fn in calls.values():  # warm-up
        for _ in range(10):
            fn()
    per_round = max(1, repeats // rounds)
    for r in range(rounds):
        order = list(calls) if r % 2 == 0 else list(reversed(calls))
        for label in order:
            samples[label] += time_calls(calls[label], per_round)
    for label, values in samples.items():
        values = np.asarray(values) * 1e3
        entry["runtimes"][label].update(
            {
                "latency_ms_median": round(float(np.median(values)), 4),
                "latency_ms_p90": round(float(np.percentile(values, 90)), 4),
                "calls": int(len(values)),
            }
        )
    f32 = entry["runtimes"]["float32"]
    entry["ratios_vs_tflite_float32"] = {
        label: {
            "size": round(v["bytes"] / f32["bytes"], 3),
            "latency": round(v["latency_ms_median"] / f32["latency_ms_median"], 3),
        }
        for label, v in entry["runtimes"].items()
    }
    int8 = entry["ratios_vs_tflite_float32"]["int8"]
    entry["targets"] = {
        "int8_size_le_0.3x": int8["size"] <= 0.3,
        "int8_latency_le_0.6x": int8["latency"] <= 0.6,
    }
    return entry


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", default=str(HERE / "results" / "export.json"))
    args = parser.parse_args(argv)
    repeats = args.repeats or (60 if args.quick else 300)
    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(THREADS)
    load_before = os.getloadavg()
    started = time.time()
    workdir = Path(tempfile.mkdtemp(prefix="bench_export_"))
    results = {
        "benchmark": "export",
        "quick": args.quick,
        "repeats": repeats,
        "threads": THREADS,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "ai_edge_litert": _version("ai-edge-litert"),
            "load_average_before": [round(v, 2) for v in load_before],
        },
        "models": {},
    }
    try:
        models = {
            "digits_convnet": digits_model,
            "cifar_resnet18": lambda: resnet_model(32 if args.quick else 64),
        }
        for name, build in models.items():
            model, representative, sample, thresholds = build()
            results["models"][name] = bench_model(
                name, model, representative, sample, thresholds, repeats, 6, workdir
            )
            if name == "cifar_resnet18":
                results["models"][name]["width"] = 32 if args.quick else 64
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["machine"]["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    results["seconds"] = round(time.time() - started, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"wrote {args.out}")


def _version(package):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def table(results) -> str:
    lines = [
        "| model | runtime | size (KB) | size vs f32 | latency ms (median) | latency vs f32 | cosine min | top-1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in results["models"].items():
        for label, v in entry["runtimes"].items():
            ratio = entry["ratios_vs_tflite_float32"][label]
            p = v["parity"]
            lines.append(
                f"| {name} | {'SavedModel (TF)' if label == 'saved_model' else 'TFLite ' + label} "
                f"| {v['bytes'] / 1024:.0f} | {ratio['size']:.2f}x | {v['latency_ms_median']:.3f} "
                f"| {ratio['latency']:.2f}x | {p['cosine_min']:.4f} | {p['top1_agreement']:.3f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
