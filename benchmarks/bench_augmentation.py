"""Augmentation throughput: two SimCLR views per image, tfcontrast vs TensorFlow Similarity.

Both sides run the same `tf.data` pipeline shape in their own process, on CPU:

    from_tensor_slices(uint8 images).batch(B).map(two_views, AUTOTUNE).prefetch(AUTOTUNE)

- ours: `ViewAugmenter(simclr_augmentation(S, blur=False), views=2)` (crop + flip, colour
  jitter p 0.8, grayscale p 0.2), giving `(B, 2, S, S, 3)`;
- peer: `tensorflow_similarity.augmenters.SimCLRAugmenter(S, S)` called as
  `augmenter(x, None, 2, False)` (same crop/flip/jitter/grayscale, no blur; per-image
  `tf.map_fn`), giving two `(B, S, S, 3)` views, in the peer virtualenv
  (`TF_USE_LEGACY_KERAS=1`, TF 2.x with legacy Keras).

A warm-up pass (tracing, thread pools) is excluded; each side then iterates the whole
dataset `--repeats` times and the best pass counts (least disturbed by other load).
Ours is also timed with blur on (`ours_blur`), for reference only.

Usage:
    python benchmarks/bench_augmentation.py           # full run
    python benchmarks/bench_augmentation.py --quick   # small sizes, checks it works

Writes benchmarks/results/augmentation.json (machine info, images/s, ratio ours/peer).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

PEER_PYTHON = "/root/.cache/tfcontrast-peers/tfsim/bin/python"
HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "augmentation.json")


def _worker(args) -> dict:
    """Runs in a child process: times one side at one image size, prints JSON."""
    import numpy as np
    import tensorflow as tf

    size, n, batch = args.size, args.images, args.batch_size
    x = np.random.default_rng(0).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    if args.worker == "tfsim":
        from tensorflow_similarity.augmenters import SimCLRAugmenter

        augmenter = SimCLRAugmenter(size, size)

        def two_views(images):
            return tuple(augmenter(images, None, 2, False))

        version = {"tensorflow": tf.__version__}
        try:
            import tensorflow_similarity

            version["tensorflow_similarity"] = tensorflow_similarity.__version__
        except Exception:  # noqa: BLE001
            pass
    else:
        import keras

        from tfcontrast.layers import ViewAugmenter, simclr_augmentation

        pipeline = simclr_augmentation(size, blur=args.worker == "ours_blur", seed=0)
        augmenter = ViewAugmenter(pipeline, views=2)

        def two_views(images):
            return augmenter(images, training=True)

        version = {"tensorflow": tf.__version__, "keras": keras.__version__}

    ds = (
        tf.data.Dataset.from_tensor_slices(x)
        .batch(batch)
        .map(two_views, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )

    def one_pass():
        count = 0
        for views in ds:
            first = views[0] if isinstance(views, tuple) else views
            count += int(first.shape[0])
        return count

    one_pass()  # warm-up: tracing and thread pools
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        count = one_pass()
        times.append(time.perf_counter() - start)
    return {
        "side": args.worker,
        "image_size": size,
        "images": count,
        "batch_size": batch,
        "seconds": times,
        "images_per_s_best": count / min(times),
        "images_per_s_median": count / sorted(times)[len(times) // 2],
        "versions": version,
    }


def _run_side(side, size, images, batch_size, repeats) -> dict:
    cmd = [
        "--worker",
        side,
        "--size",
        str(size),
        "--images",
        str(images),
        "--batch-size",
        str(batch_size),
        "--repeats",
        str(repeats),
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    if side == "tfsim":
        python = PEER_PYTHON
        env["TF_USE_LEGACY_KERAS"] = "1"
    else:
        python = sys.executable
        env["PYTHONPATH"] = os.path.dirname(HERE) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [python, os.path.abspath(__file__), *cmd],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{side} at {size}px failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def _machine() -> dict:
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small image counts")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--output", default=RESULTS)
    parser.add_argument("--worker", choices=["ours", "ours_blur", "tfsim"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        args.repeats = args.repeats or 3
        print(json.dumps(_worker(args)))
        return

    # Images per size: enough batches for tf.data to overlap the parallel maps.
    counts = {32: 1024, 224: 256} if args.quick else {32: 16384, 224: 1536}
    batch = min(args.batch_size, 64) if args.quick else args.batch_size
    repeats = args.repeats or (2 if args.quick else 3)
    report = {
        "benchmark": "augmentation throughput: two SimCLR views per image (CPU, tf.data)",
        "quick": args.quick,
        "machine": _machine(),
        "pipeline": "from_tensor_slices(uint8).batch(B).map(two_views, AUTOTUNE).prefetch",
        "ours": "ViewAugmenter(simclr_augmentation(S, blur=False), views=2)",
        "peer": "tensorflow_similarity SimCLRAugmenter(S, S)(x, None, 2, False)",
        "metric": "images/s (each image -> 2 views), best of repeats, warm-up excluded",
        "results": {},
    }
    for size, n in counts.items():
        row = {}
        for side in ("ours", "tfsim", "ours_blur"):
            res = _run_side(side, size, n, batch, repeats)
            row[side] = res
            print(
                f"{size:>4}px {side:>9}: {res['images_per_s_best']:8.1f} images/s "
                f"(best of {repeats}, {res['images']} images, batch {batch})",
                flush=True,
            )
        row["ratio_ours_over_tfsim"] = (
            row["ours"]["images_per_s_best"] / row["tfsim"]["images_per_s_best"]
        )
        print(f"{size:>4}px ratio ours/tfsim: {row['ratio_ours_over_tfsim']:.2f}x", flush=True)
        report["results"][str(size)] = row
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
