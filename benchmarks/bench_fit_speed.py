"""Training speed of SimCLR: `ContrastiveModel.fit` vs a hand-written loop vs TF Similarity.

Four runs of one SimCLR training step (CIFAR ResNet-18, 32x32x3 random images, batch
B = 128, i.e. 256 views per step, projector Dense(2048)-BN-ReLU-Dense(128), NT-Xent at
temperature 0.5, SGD with momentum 0.9):

- `ours`: `tfcontrast.models.ContrastiveModel(algorithm="simclr")` trained by `fit`; its
  default `view_batches="joint"` encodes both views as one batch of 2B;
- `ours_per_view`: the same with `view_batches="per_view"`, one batch of B per view;
- `manual`: the same Keras 3 model parts (same backbone and head classes) trained by a
  minimal hand-written `tf.function` step (`GradientTape`, `NTXentLoss`,
  `optimizer.apply_gradients`), both views in one batch;
- `tfsim`: TensorFlow Similarity's `ContrastiveModel(algorithm="simclr")` with its
  `SimCLRLoss`, a layer-for-layer equal ResNet-18 and projector written with legacy
  Keras (`tf_keras`), run in its own interpreter
  (`TF_USE_LEGACY_KERAS=1 /root/.cache/tfcontrast-peers/tfsim/bin/python`); its
  `train_step` calls the backbone once per view.

Comparisons pair runs that do the same work (`COMPARISONS`): `ours` against `manual`
(target >= 0.95x) and `ours_per_view` against `tfsim` (target >= 1.0x); `ours` against
`tfsim` is reported too. On 2 CPU cores two batches of B are faster than one of 2B.

The augmentation is the same TensorFlow function for all of them (random crop from a
4-pixel padding, horizontal flip, brightness jitter), applied in the `tf.data` pipeline
that makes the two views, so every implementation gets exactly the same input work.
Each run is a separate process with the same thread settings (`--threads`); runs are
alternated, the order rotated each round. Every step is timed (synchronised on its
loss) after `--warmup` steps (tracing and the first step excluded); a run's steps/s is
1 / its median step time. Reported: the median over rounds per implementation, and the
ratios within each round (runs in the same round, under about the same load) with their
median.

    python benchmarks/bench_fit_speed.py            # B=128, 3 rounds x 4 steps, ~15 min
    python benchmarks/bench_fit_speed.py --rounds 4 --steps 6 --warmup 2   # ~17 min, 2 cores
    python benchmarks/bench_fit_speed.py --quick    # B=32, 1 round, 3 steps
    python benchmarks/bench_fit_speed.py --from-json benchmarks/results/fit_speed.json
        # recompute the ratios of stored runs (rewrites the file's summary fields)

All the models have the same 12,483,776 trainable parameters (checked in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

TFSIM_PYTHON = "/root/.cache/tfcontrast-peers/tfsim/bin/python"
TEMPERATURE = 0.5


# -- shared by every worker (TensorFlow only, no Keras) -----------------------------
def make_dataset(tf, batch_size, n_images=512, seed=0):
    rng = tf.random.Generator.from_seed(seed)
    images = rng.uniform((n_images, 32, 32, 3))

    def augment(x):
        b = tf.shape(x)[0]
        x = tf.pad(x, [[0, 0], [4, 4], [4, 4], [0, 0]], mode="REFLECT")
        x = tf.image.random_crop(x, tf.stack([b, 32, 32, 3]))
        flip = tf.random.uniform((b, 1, 1, 1)) < 0.5
        x = tf.where(flip, tf.reverse(x, axis=[2]), x)
        x = x + tf.random.uniform((b, 1, 1, 1), -0.2, 0.2)
        return tf.clip_by_value(x, 0.0, 1.0)

    ds = tf.data.Dataset.from_tensor_slices(images).repeat().batch(batch_size, drop_remainder=True)
    ds = ds.map(lambda x: (augment(x), augment(x)), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def set_threads(tf, threads):
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def resnet18_legacy(K, width=64):
    """Layer-for-layer copy of `tfcontrast.models.backbones.cifar_resnet18` in `K`."""
    L = K.layers

    def conv_bn(x, filters, kernel, stride):
        x = L.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False)(x)
        return L.BatchNormalization()(x)

    inputs = K.Input((32, 32, 3))
    x = L.ReLU()(conv_bn(inputs, width, 3, 1))
    for stage, mult in enumerate((1, 2, 4, 8)):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            y = L.ReLU()(conv_bn(x, width * mult, 3, stride))
            y = conv_bn(y, width * mult, 3, 1)
            shortcut = x
            if stride != 1 or x.shape[-1] != width * mult:
                shortcut = conv_bn(x, width * mult, 1, stride)
            x = L.ReLU()(L.Add()([y, shortcut]))
    return K.Model(inputs, L.GlobalAveragePooling2D()(x))


class _Timer:
    """Wall-clock time at the end of every step, synchronised on the loss value."""

    def __init__(self, warmup):
        self.warmup, self.times = warmup, {}

    def mark(self, step, loss):
        float(loss)  # wait for the step to finish
        self.times[step] = time.perf_counter()

    def step_seconds(self, total):
        """Durations of the measured steps (after the warm-up ones)."""
        return [self.times[i + 1] - self.times[i] for i in range(self.warmup, total)]


# -- workers -------------------------------------------------------------------------
def worker_ours(args, view_batches="joint"):
    import tensorflow as tf

    set_threads(tf, args.threads)
    import keras

    from tfcontrast.layers import ProjectionHead
    from tfcontrast.models import ContrastiveModel, algorithms, backbones

    keras.utils.set_random_seed(0)
    ds = make_dataset(tf, args.batch_size).map(lambda a, b: tf.stack([a, b], axis=1))
    model = ContrastiveModel(
        backbones.cifar_resnet18((32, 32, 3)),
        projector=ProjectionHead((2048,), 128),
        algorithm=algorithms.SimCLR(temperature=TEMPERATURE),
        view_batches=view_batches,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    timer = _Timer(args.warmup)
    total = args.warmup + args.steps

    class Cb(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 >= args.warmup:
                timer.mark(batch + 1, logs["loss"])

    model.fit(ds, steps_per_epoch=total, epochs=1, verbose=0, callbacks=[Cb()])
    params = int(sum(w.numpy().size for w in model.trainable_weights))
    return timer, params


def worker_manual(args):
    import tensorflow as tf

    set_threads(tf, args.threads)
    import keras

    from tfcontrast.layers import ProjectionHead
    from tfcontrast.losses import NTXentLoss
    from tfcontrast.models import backbones

    keras.utils.set_random_seed(0)
    ds = make_dataset(tf, args.batch_size)
    backbone = backbones.cifar_resnet18((32, 32, 3))
    projector = ProjectionHead((2048,), 128)
    projector.build((None, 512))
    loss_fn = NTXentLoss(temperature=TEMPERATURE)
    optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
    variables = backbone.trainable_variables + projector.trainable_variables
    optimizer.build(variables)

    @tf.function(jit_compile=False)
    def step(v1, v2):
        b = tf.shape(v1)[0]
        with tf.GradientTape() as tape:
            z = projector(backbone(tf.concat([v1, v2], 0), training=True), training=True)
            loss = loss_fn(None, tf.stack([z[:b], z[b:]], axis=1))
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    timer = _Timer(args.warmup)
    total = args.warmup + args.steps
    for i, (v1, v2) in enumerate(ds.take(total)):
        loss = step(v1, v2)
        if i + 1 >= args.warmup:
            timer.mark(i + 1, loss)
    params = int(sum(w.numpy().size for w in variables))
    return timer, params


def worker_tfsim(args):
    import tensorflow as tf

    set_threads(tf, args.threads)
    import tensorflow_similarity as tfsim

    K = tf.keras
    tf.random.set_seed(0)
    ds = make_dataset(tf, args.batch_size)
    backbone = resnet18_legacy(K)
    projector = K.Sequential(
        [
            K.Input((512,)),
            K.layers.Dense(2048, use_bias=False),
            K.layers.BatchNormalization(),
            K.layers.ReLU(),
            K.layers.Dense(128),
        ]
    )
    model = tfsim.models.ContrastiveModel(
        backbone=backbone, projector=projector, algorithm="simclr"
    )
    model.compile(
        optimizer=K.optimizers.SGD(0.05, momentum=0.9),
        loss=tfsim.losses.SimCLRLoss(temperature=TEMPERATURE),
    )
    timer = _Timer(args.warmup)
    total = args.warmup + args.steps

    class Cb(K.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 >= args.warmup:
                timer.mark(batch + 1, logs["loss"])

    model.fit(ds, steps_per_epoch=total, epochs=1, verbose=0, callbacks=[Cb()])
    params = int(
        sum(int(tf.size(w)) for w in backbone.trainable_weights + projector.trainable_weights)
    )
    return timer, params


WORKERS = {
    "ours": worker_ours,
    "ours_per_view": lambda args: worker_ours(args, view_batches="per_view"),
    "manual": worker_manual,
    "tfsim": worker_tfsim,
}
#: (ours, baseline, target): each comparison runs the same work on both sides. The
#: hand-written loop, like `fit` by default, encodes both views in one batch of 2B;
#: TF Similarity calls the backbone once per view (BatchNorm statistics per view), as
#: `ContrastiveModel(view_batches="per_view")` does.
COMPARISONS = [
    ("ours", "manual", 0.95),
    ("ours_per_view", "tfsim", 1.0),
    ("ours", "tfsim", None),
    ("ours_per_view", "ours", None),  # what the per-view batches alone change
]


def run_worker(args):
    timer, params = WORKERS[args.worker](args)
    total = args.warmup + args.steps
    steps = timer.step_seconds(total)
    print(
        "RESULT "
        + json.dumps(
            {
                "worker": args.worker,
                # The median step: one slow step (another job on the machine) does not
                # move it, where it moves a mean over a few steps.
                "steps_per_second": 1.0 / statistics.median(steps),
                "mean_steps_per_second": args.steps / sum(steps),
                "step_seconds": steps,
                "trainable_parameters": params,
                "load_average": os.getloadavg(),
            }
        ),
        flush=True,
    )


# -- driver --------------------------------------------------------------------------
def summarize(result):
    """Adds the medians and the `COMPARISONS` ratios of `result["runs"]`, and prints them."""
    runs = result["runs"]
    medians = {w: statistics.median(x["steps_per_second"] for x in rs) for w, rs in runs.items()}
    comparisons = [c for c in COMPARISONS if c[0] in runs and c[1] in runs]
    # Ratios within each round (runs in the same round, under about the same load), then
    # their median: steadier than the ratio of the medians on a shared machine.
    paired = {
        f"{a}_over_{b}": [
            x["steps_per_second"] / y["steps_per_second"] for x, y in zip(runs[a], runs[b])
        ]
        for a, b, _ in comparisons
    }
    result["median_steps_per_second"] = medians
    result["per_round_ratios"] = paired
    result["median_per_round_ratio"] = {k: statistics.median(v) for k, v in paired.items()}
    for a, b, target in comparisons:
        key = f"{a}_over_{b}"
        result[key] = medians[a] / medians[b]
        goal = f" (target >= {target})" if target else ""
        print(
            f"{a} / {b}: {result[key]:.3f} (medians), "
            f"{result['median_per_round_ratio'][key]:.3f} (median per round){goal}"
        )
        print(f"  per round: {', '.join(f'{x:.3f}' for x in paired[key])}")
    return result


def spawn(worker, args):
    python = TFSIM_PYTHON if worker == "tfsim" else sys.executable
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if worker == "tfsim":
        env["TF_USE_LEGACY_KERAS"] = "1"
    cmd = [
        python,
        os.path.abspath(__file__),
        "--worker",
        worker,
        "--batch_size",
        str(args.batch_size),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{worker} failed:\n{out.stderr[-3000:]}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=sorted(WORKERS), default=None)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", default="ours,ours_per_view,manual,tfsim")
    parser.add_argument("--quick", action="store_true", help="B=32, 3 steps, 1 round")
    parser.add_argument("--output", default="benchmarks/results/fit_speed.json")
    parser.add_argument("--from-json", help="recompute the summary of a results file")
    args = parser.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            result = summarize(json.load(f))
        with open(args.from_json, "w") as f:
            json.dump(result, f, indent=2)
        return result
    if args.worker:
        return run_worker(args)
    if args.quick:
        args.batch_size, args.steps, args.rounds = 32, 3, 1

    workers = [w for w in args.workers.split(",") if w]
    runs = {w: [] for w in workers}
    load_start = os.getloadavg()
    for r in range(args.rounds):
        # Rotate the order each round, so no implementation always runs first.
        for w in workers[r % len(workers) :] + workers[: r % len(workers)]:
            result = spawn(w, args)
            runs[w].append(result)
            print(
                f"round {r + 1} {w:>13}: {result['steps_per_second']:.4f} steps/s "
                f"(load {result['load_average'][0]:.2f})",
                flush=True,
            )
    result = {
        "benchmark": "fit_speed",
        "setup": {
            "model": "SimCLR, CIFAR ResNet-18 (3x3 stem, no max-pool) + Dense(2048)-BN-ReLU-"
            "Dense(128), NT-Xent t=0.5, SGD(0.05, momentum 0.9)",
            "input": "random 32x32x3 images, two views by one tf.data augmentation "
            "(pad-4 random crop, flip, brightness) for every implementation",
            "batch_size": args.batch_size,
            "views_per_step": 2 * args.batch_size,
            "warmup_steps": args.warmup,
            "measured_steps": args.steps,
            "rounds": args.rounds,
            "threads": {"intra_op": args.threads, "inter_op": args.threads},
            "tfsim": "tensorflow-similarity 0.17.1 ContrastiveModel('simclr'), tf_keras "
            "(TF_USE_LEGACY_KERAS=1), separate interpreter",
            "view_batches": {
                "ours": "joint (one batch of 2B)",
                "ours_per_view": "per_view (two batches of B)",
                "manual": "joint (one batch of 2B)",
                "tfsim": "per view (two backbone calls of B)",
            },
            "timing": "every step synchronised on its loss; a run's steps_per_second is "
            "1 / its median step",
        },
        "runs": runs,
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average_start": load_start,
            "load_average_end": os.getloadavg(),
            "note": "shared machine: other jobs ran at the same time (see load averages)",
        },
        "quick": args.quick,
    }
    summarize(result)
    if args.output and not args.quick:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
