"""Speed of the photo recipe's training step: tfcontrast against the same network and loss
in plain PyTorch, and the share of the step that augmentation takes.

The recipe `tfcontrast train` picks for 32x32 colour photos (`recipes.for_images`:
method, backbone, width, heads, batch, AdamW), timed three ways, each in its own process
with the same number of threads:

- `tfcontrast`: the recipe's `ContrastiveModel` trained by `fit`, its augmentation
  (`small_natural`) inside the step, as `tfcontrast train` runs it;
- `tfcontrast_no_aug`: the same model with `augmentation="none"` (two copies of each
  image: the same network and loss work, no augmentation), whose difference from the
  first is the augmentation's share;
- `torch`: the same network written in plain PyTorch (ResNet-18 for small images of the
  recipe's width, projector Linear-BN-ReLU-Linear at the recipe's widths, NT-Xent at the
  recipe's temperature, AdamW), on two ready-made views: the reference for
  `tfcontrast_no_aug`. It runs in the peers' environment (`../shared/peers/setup.sh`).

Each run times `--steps` steps after `--warmup`, synchronised on the loss; the rounds
alternate the runs, and the ratios are taken within a round (the same load).

    python benchmarks/bench_photo_speed.py                      # 3 rounds, ~6 min
    python benchmarks/bench_photo_speed.py --rounds 1 --steps 3 --warmup 1   # smoke

Writes `benchmarks/results/photo_speed.json` (or `--out`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = Path(os.environ.get("TFCONTRAST_PEERS", Path.home() / ".cache" / "tfcontrast-peers"))
TORCH_PYTHON = PEERS / "torch" / "bin" / "python"


def recipe_settings() -> dict:
    """What the photo recipe trains: read from `recipes.for_images`, never copied."""
    import numpy as np

    from tfcontrast.models import recipes

    photos = np.random.default_rng(0).uniform(size=(64, 32, 32, 3)).astype("float32")
    recipe, _ = recipes.for_images(photos)
    model, _ = recipes.build_model(recipe, photos.shape[1:], sample=photos)
    return {
        "algorithm": recipe.algorithm,
        "backbone": recipe.backbone,
        "width": recipe.width or recipes.RECIPE_WIDTHS[recipe.backbone],
        "hidden_dim": recipe.hidden_dim,
        "projection_dim": recipe.projection_dim,
        "batch_size": recipe.batch_size,
        "learning_rate": recipe.learning_rate,
        "temperature": model.algorithm.get_config().get("temperature"),
    }


def time_tfcontrast(settings, steps, warmup, augment=True) -> list[float]:
    import keras
    import numpy as np

    from tfcontrast.models import recipes

    batch = settings["batch_size"]
    x = np.random.default_rng(0).uniform(size=(batch * (steps + warmup), 32, 32, 3))
    x = x.astype("float32")
    recipe, _ = recipes.for_images(x, augmentation=None if augment else "none")
    model, _ = recipes.build_model(recipe, x.shape[1:], sample=x)
    recipes.compile_model(model, recipe, len(x))
    ends = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # synchronised on the loss
            ends.append(time.perf_counter())

    model.fit(x, batch_size=batch, epochs=1, verbose=0, shuffle=False, callbacks=[Clock()])
    return [b - a for a, b in zip(ends[warmup - 1 :], ends[warmup:])]


TORCH_STEP = r"""
import json, sys, time
import torch
from torch import nn
import torch.nn.functional as F

settings, steps, warmup, threads = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
torch.manual_seed(0)

def conv_bn(cin, cout, stride, kernel=3):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout))

class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.a, self.b = conv_bn(cin, cout, stride), conv_bn(cout, cout, 1)
        self.short = conv_bn(cin, cout, stride, 1) if stride != 1 or cin != cout else nn.Identity()
    def forward(self, x):
        return F.relu(self.b(F.relu(self.a(x))) + self.short(x))

w = settings["width"]
layers = [conv_bn(3, w, 1), nn.ReLU()]
cin = w
for stage, m in enumerate((1, 2, 4, 8)):
    for block in range(2):
        layers.append(Block(cin, w * m, 2 if stage and not block else 1)); cin = w * m
layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
hidden, out = settings["hidden_dim"], settings["projection_dim"]
model = nn.Sequential(*layers, nn.Linear(cin, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, out))
model = model.to(memory_format=torch.channels_last)
opt = torch.optim.AdamW(model.parameters(), lr=settings["learning_rate"], weight_decay=0.0)
batch, t = settings["batch_size"], settings["temperature"]

def nt_xent(z):
    z = F.normalize(z, dim=1)
    n = z.shape[0] // 2
    logits = z @ z.T / t
    logits.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(logits, target)

views = torch.rand(2 * batch, 3, 32, 32).to(memory_format=torch.channels_last)
times = []
for i in range(steps + warmup):
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss = nt_xent(model(views))
    loss.backward()
    opt.step()
    float(loss)
    if i >= warmup:
        times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


def time_torch(settings, steps, warmup, threads) -> list[float]:
    done = subprocess.run(
        [
            str(TORCH_PYTHON),
            "-c",
            TORCH_STEP,
            json.dumps(settings),
            str(steps),
            str(warmup),
            str(threads),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def worker(args):
    """One timed run in this process (`--run NAME`): prints its step times as JSON."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    settings = recipe_settings()
    augment = args.run == "tfcontrast"
    print(json.dumps(time_tfcontrast(settings, args.steps, args.warmup, augment)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(HERE / "results" / "photo_speed.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.run:
        return worker(args)
    sys.path.insert(0, str(HERE))
    from _common import run_header, write_json

    settings = recipe_settings()
    runs = ["tfcontrast", "tfcontrast_no_aug", "torch"]
    medians = {name: [] for name in runs}
    for r in range(args.rounds):
        for name in runs[r % 3 :] + runs[: r % 3]:
            if name == "torch":
                times = time_torch(settings, args.steps, args.warmup, args.threads)
            else:
                command = [sys.executable, __file__, "--run", name, "--steps", str(args.steps)]
                command += ["--warmup", str(args.warmup), "--threads", str(args.threads)]
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                times = json.loads(done.stdout.strip().splitlines()[-1])
            medians[name].append(1000 * statistics.median(times))
            print(f"round {r + 1}: {name} {medians[name][-1]:.0f} ms/step", flush=True)
    ratios = {
        # > 1: tfcontrast's step is faster than plain PyTorch's on the same work.
        "torch_over_tfcontrast_no_aug": [
            t / o for t, o in zip(medians["torch"], medians["tfcontrast_no_aug"])
        ],
        "augmentation_share": [
            (a - n) / a for a, n in zip(medians["tfcontrast"], medians["tfcontrast_no_aug"])
        ],
    }
    result = {
        **run_header("bench_photo_speed"),
        "recipe": settings,
        "ms_per_step": {k: [round(v, 1) for v in vs] for k, vs in medians.items()},
        "ratios": {k: [round(v, 3) for v in vs] for k, vs in ratios.items()},
        "median_ratios": {k: round(statistics.median(vs), 3) for k, vs in ratios.items()},
    }
    write_json(Path(args.out), result)
    print(json.dumps(result["median_ratios"]))


if __name__ == "__main__":
    main()
