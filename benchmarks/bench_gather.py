"""Cost of global negatives: loss time with and without the cross-replica gather.

Runs `MirroredStrategy` over 2 logical CPU devices and times one forward + backward of a
loss (gradient with respect to the replica's embeddings, which includes the backward
all-reduce of the gather) at `B` rows per replica:

- `local`: the gather switched off; each replica contrasts its own `B` rows;
- `global`: the default; each replica contrasts its `B` anchors with all `2B` rows;
- `gather_only`: the all-gather of the embeddings alone, forward and backward.

The ratio `global / local` is what global negatives cost: the collective plus a
similarity matrix twice as wide. On 2 logical CPUs the "devices" share the same cores
and memory, so the collective is a memory copy; on GPUs or several hosts it becomes
NVLink / network traffic, and the ratio should be measured there.

    python benchmarks/bench_gather.py            # B = 1024 per replica
    python benchmarks/bench_gather.py --quick    # B = 256, fewer repeats

Writes benchmarks/results/gather.json. The machine may be shared: the load average at
start and end is recorded next to the timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import tensorflow as tf  # noqa: E402

_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfcontrast import distribute, losses  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "gather.json"


def make_losses():
    return {
        "nt_xent": (losses.NTXentLoss(temperature=0.1), True),
        "triplet_batch_hard": (losses.TripletLoss(miner="hard"), False),
    }


def timed(fns, arg, repeats):
    """Median and min seconds of each function, measured interleaved (round robin) so
    that a change in the machine's load affects them alike."""
    for fn in fns.values():
        fn(arg)  # trace
        fn(arg)  # warm
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            out = fn(arg)
            tf.nest.map_structure(lambda t: t.numpy(), out, expand_composites=True)  # wait
            times[name].append(time.perf_counter() - start)
    return {name: (float(np.median(t)), float(np.min(t))) for name, t in times.items()}


def bench(batch, dim, repeats):
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices)
    rng = np.random.default_rng(0)
    original = distribute._replica_context
    results = {}
    for name, (loss, views) in make_losses().items():
        shape = (2 * batch, 2, dim) if views else (2 * batch, dim)
        x = rng.normal(size=shape).astype("float32")
        y = rng.integers(0, max(2, batch // 8), size=2 * batch).astype("int32")

        def value_fn(ctx, x=x, y=y):
            i = ctx.replica_id_in_sync_group
            return x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch]

        dist = strategy.experimental_distribute_values_from_function(value_fn)

        def replica_step(inputs, loss=loss, views=views):
            emb, labels = inputs
            with tf.GradientTape() as tape:
                tape.watch(emb)
                value = loss(None if views else labels, emb)
            return value, tape.gradient(value, emb)

        def gather_step(inputs):
            emb, _ = inputs
            with tf.GradientTape() as tape:
                tape.watch(emb)
                gathered = distribute.all_gather(emb)
                value = tf.reduce_sum(gathered * gathered)
            return value, tape.gradient(value, emb)

        def compiled(step):
            return tf.function(lambda d: strategy.run(step, args=(d,)), autograph=False)

        def local_only(d, step=replica_step):
            # The gather switched off while tracing: each replica keeps its own rows.
            distribute._replica_context = lambda: None
            try:
                return strategy.run(step, args=(d,))
            finally:
                distribute._replica_context = original

        fns = {
            "global": compiled(replica_step),
            "local": tf.function(local_only, autograph=False),
            "gather_only": compiled(gather_step),
        }
        got = timed(fns, dist, repeats)
        entry = {
            "global_s": got["global"][0],
            "global_min_s": got["global"][1],
            "local_s": got["local"][0],
            "local_min_s": got["local"][1],
            "gather_only_s": got["gather_only"][0],
        }
        entry["ratio_global_over_local"] = entry["global_s"] / entry["local_s"]
        entry["ratio_of_minima"] = entry["global_min_s"] / entry["local_min_s"]
        entry["gather_share_of_global"] = entry["gather_only_s"] / entry["global_s"]
        results[name] = entry
        print(
            f"{name:20s} local {entry['local_s'] * 1e3:8.1f} ms  global "
            f"{entry['global_s'] * 1e3:8.1f} ms  ratio {entry['ratio_global_over_local']:.2f}  "
            f"gather alone {entry['gather_only_s'] * 1e3:6.1f} ms",
            flush=True,
        )
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="B=256, 5 repeats")
    parser.add_argument("--batch", type=int, default=None, help="rows per replica")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    batch = args.batch or (256 if args.quick else 1024)
    repeats = args.repeats or (5 if args.quick else 15)
    load_start = os.getloadavg()
    start = time.time()
    results = bench(batch, args.dim, repeats)
    report = {
        "benchmark": "bench_gather",
        "setup": "MirroredStrategy over 2 logical CPU devices; forward + backward "
        "(gradient wrt embeddings) of the loss",
        "batch_per_replica": batch,
        "global_batch": 2 * batch,
        "dim": args.dim,
        "repeats": repeats,
        "quick": args.quick,
        "results": results,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "seconds": time.time() - start,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
