"""SimCLR training throughput on any Keras backend: `ContrastiveModel.fit` vs a minimal loop.

One SimCLR step: CIFAR ResNet-18 (`tfcontrast.models.backbones.cifar_resnet18`) on
32x32x3 images, two ready-made views per image (so B images are 2B backbone passes),
projector Dense(2048)-BN-ReLU-Dense(128), NT-Xent at temperature 0.5, SGD with momentum
0.9. Reported: images/s (B per step; views/s is twice that) and peak memory.

Modes, each run in its own process (the backend is chosen before keras is imported, and
peak memory is per process):

- `fit`: `tfcontrast.models.ContrastiveModel(algorithm="simclr")` trained by `fit`
  (any backend: tensorflow, jax, torch).
- `manual` (JAX only): a minimal hand-written JAX loop over the same Keras model parts:
  `model.stateless_call` + `jax.value_and_grad` + `optimizer.stateless_apply` in one
  `jax.jit` step with donated state, NT-Xent written in `jax.numpy`. The ratio
  fit / manual is the framework's overhead.

Both modes are fed the same host (NumPy) batches and synchronise on the loss once per
step. `--dtype bfloat16` sets the `mixed_bfloat16` policy (float32 variables and loss).
Peak memory is the accelerator's peak bytes in use where the backend reports it (JAX
`memory_stats`, `torch.cuda.max_memory_allocated`, TF `get_memory_info`), else the
process's peak resident set size (CPU: includes the framework itself).

    # GPU, as in the issue: JAX at B=256 and 512, bfloat16, fit vs hand-written loop
    python benchmarks/bench_train.py --backend jax --batch-sizes 256 512 --dtype bfloat16
    # any backend, CPU-sized check (tiny model):
    python benchmarks/bench_train.py --backend torch --quick

Writes `benchmarks/results/train_<backend>.json` (or `--out`).
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARKER = "@@TRAIN@@ "
TEMPERATURE = 0.5


# -- worker (one mode, one batch size, in its own process) -------------------------------
def _device_name(backend):
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform != "cpu":
            return f"{device.platform}: {device.device_kind}"
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return f"cuda: {torch.cuda.get_device_name(0)}"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return f"gpu: {details.get('device_name', gpus[0].name)}"
    return f"cpu: {_cpu_name()} ({os.cpu_count()} logical cores)"


def _cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _peak_memory(backend):
    """(bytes, what was measured)."""
    try:
        if backend == "jax":
            import jax

            stats = jax.devices()[0].memory_stats()
            if stats and "peak_bytes_in_use" in stats:
                return int(stats["peak_bytes_in_use"]), "device peak_bytes_in_use"
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return int(torch.cuda.max_memory_allocated()), "torch.cuda.max_memory_allocated"
        if backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                return int(tf.config.experimental.get_memory_info("GPU:0")["peak"]), "TF GPU peak"
    except Exception:  # noqa: BLE001 - fall back to the process's peak RSS
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process peak RSS"


def _parts(width, image_size):
    from tfcontrast.layers import ProjectionHead
    from tfcontrast.models import backbones

    backbone = backbones.cifar_resnet18((image_size, image_size, 3), width=width)
    projector = ProjectionHead(hidden_dims=(2048,), output_dim=128)
    return backbone, projector


def _batches(batch, steps, image_size, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.uniform(size=(batch * steps, 2, image_size, image_size, 3)).astype("float32")


def _run_fit(args, data):
    import keras

    from tfcontrast.models import ContrastiveModel, algorithms

    backbone, projector = _parts(args.width, args.image_size)
    model = ContrastiveModel(
        backbone, projector=projector, algorithm=algorithms.SimCLR(temperature=TEMPERATURE)
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    times = []

    def on_batch_end(batch, logs):
        float(logs["loss"])  # wait for the step
        times.append(time.perf_counter())

    model.fit(
        data,
        batch_size=args.batch,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[keras.callbacks.LambdaCallback(on_train_batch_end=on_batch_end)],
    )
    return times


def _run_manual_jax(args, data):
    import jax
    import jax.numpy as jnp
    import keras

    backbone, projector = _parts(args.width, args.image_size)
    size = args.image_size
    inputs = keras.Input((size, size, 3))
    net = keras.Model(inputs, projector(backbone(inputs)))
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(net.trainable_variables)

    def nt_xent(a, b):
        z = jnp.concatenate([a, b], axis=0)
        z = z / jnp.maximum(jnp.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        n = a.shape[0]
        logits = (z @ z.T) / TEMPERATURE - 1e9 * jnp.eye(2 * n, dtype=z.dtype)
        targets = jnp.concatenate([jnp.arange(n) + n, jnp.arange(n)])
        logp = jax.nn.log_softmax(logits, axis=1)
        return -jnp.mean(logp[jnp.arange(2 * n), targets])

    def loss_fn(trainable, non_trainable, views):
        flat = jnp.reshape(views, (-1,) + views.shape[2:])
        z, non_trainable = net.stateless_call(trainable, non_trainable, flat, training=True)
        z = jnp.reshape(z.astype("float32"), (views.shape[0], views.shape[1], -1))
        return nt_xent(z[:, 0], z[:, 1]), non_trainable

    def _step(trainable, non_trainable, opt_vars, views):
        (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, non_trainable, views
        )
        trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
        return loss, trainable, non_trainable, opt_vars

    step = jax.jit(_step, donate_argnums=(0, 1, 2))
    state = (
        [v.value for v in net.trainable_variables],
        [v.value for v in net.non_trainable_variables],
        [v.value for v in optimizer.variables],
    )
    times = []
    for start in range(0, len(data), args.batch):
        views = jnp.asarray(data[start : start + args.batch])
        loss, *state = step(*state, views)
        float(loss)
        times.append(time.perf_counter())
    return times


def worker(args):
    import keras

    backend = keras.backend.backend()
    if args.dtype == "bfloat16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    data = _batches(args.batch, args.warmup + args.steps, args.image_size)
    if args.mode == "manual":
        if backend != "jax":
            raise SystemExit("--mode manual is the hand-written JAX loop: use --backend jax")
        times = _run_manual_jax(args, data)
    else:
        times = _run_fit(args, data)
    timed = times[args.warmup - 1 :]  # from the end of the last warm-up step
    step_s = [b - a for a, b in zip(timed, timed[1:])]
    total = timed[-1] - timed[0]
    peak, peak_kind = _peak_memory(backend)
    return {
        "backend": backend,
        "keras": keras.__version__,
        "device": _device_name(backend),
        "mode": args.mode,
        "batch": args.batch,
        "dtype": args.dtype,
        "steps_timed": len(step_s),
        "images_per_s": args.batch * len(step_s) / total,
        "step_ms_median": 1000 * statistics.median(step_s),
        "peak_memory_bytes": peak,
        "peak_memory_kind": peak_kind,
    }


# -- driver ----------------------------------------------------------------------------
def _spawn(args, mode, batch):
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--mode",
        mode,
        "--batch",
        str(batch),
        "--dtype",
        args.dtype,
        "--width",
        str(args.width),
        "--image-size",
        str(args.image_size),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
    ]
    env = {**os.environ, "KERAS_BACKEND": args.backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE.parent), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"worker {mode} B={batch} failed (rc={proc.returncode})")
    return json.loads(lines[-1][len(MARKER) :])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "jax"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="bfloat16")
    parser.add_argument("--width", type=int, default=64, help="ResNet-18 width (64: standard)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds per case")
    parser.add_argument(
        "--modes", nargs="+", default=None, help="fit and/or manual (default: both on JAX)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="CPU check: B=16, width 8, 4 steps, 1 round"
    )
    parser.add_argument("--out", default=None)
    parser.add_argument("--note", default="", help="free text stored with the results")
    # worker-only arguments
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="fit", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=256, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(MARKER + json.dumps(worker(args)), flush=True)
        return
    if args.quick:
        args.batch_sizes, args.width, args.steps, args.warmup, args.repeats = [16], 8, 4, 2, 1
    modes = args.modes or (["fit", "manual"] if args.backend == "jax" else ["fit"])
    runs = []
    for batch in args.batch_sizes:
        for round_ in range(args.repeats):
            # Alternate which mode goes first in each round.
            for mode in modes if round_ % 2 == 0 else modes[::-1]:
                result = _spawn(args, mode, batch)
                result["round"] = round_
                runs.append(result)
                print(
                    f"{args.backend:10s} {mode:6s} B={batch:4d} {args.dtype:8s} "
                    f"{result['images_per_s']:9.1f} images/s  "
                    f"{result['step_ms_median']:8.1f} ms/step  "
                    f"peak {result['peak_memory_bytes'] / 2**20:8.0f} MiB "
                    f"({result['peak_memory_kind']})",
                    flush=True,
                )
    summary = []
    for batch in args.batch_sizes:
        row = {"batch": batch}
        for mode in modes:
            rates = [r["images_per_s"] for r in runs if r["batch"] == batch and r["mode"] == mode]
            peaks = [
                r["peak_memory_bytes"] for r in runs if r["batch"] == batch and r["mode"] == mode
            ]
            row[f"{mode}_images_per_s_median"] = statistics.median(rates)
            row[f"{mode}_peak_memory_mib"] = max(peaks) / 2**20
        if "fit" in modes and "manual" in modes:
            row["fit_over_manual"] = (
                row["fit_images_per_s_median"] / row["manual_images_per_s_median"]
            )
        summary.append(row)
    report = {
        "benchmark": "SimCLR training throughput (CIFAR ResNet-18, 2 views of 32x32x3)",
        "backend": args.backend,
        "device": runs[0]["device"],
        "config": {
            "batch_sizes": args.batch_sizes,
            "dtype": args.dtype,
            "resnet18_width": args.width,
            "image_size": args.image_size,
            "steps": args.steps,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "quick": args.quick,
        },
        "python": platform.python_version(),
        "note": args.note,
        "summary": summary,
        "runs": runs,
    }
    out = Path(args.out) if args.out else HERE / "results" / f"train_{args.backend}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
