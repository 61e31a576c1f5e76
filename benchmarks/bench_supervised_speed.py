"""Training speed per epoch of the supervised rows: SupCon against ArcFace and ProxyAnchor.

Issue 21's speed target: with the same backbone, batch and budget as SupCon, the proxy
losses train at least as fast per epoch. `bench_quality.py` records each row's seconds,
but one run per row, beside whatever else the machine did, says little about a few per
cent. Here every row is built as `bench_quality.py` builds it (`tfcontrast.models.recipes`:
automatic augmentation and backbone, the row's loss, AdamW) in one process, on the same
USPS images, and the rows take turns: each round trains every row for one epoch of
`--steps` batches (`fit`, batch 256, two views), the order rotated every round. An epoch
is the same number of batches for every row, so seconds per epoch compare as seconds per
step. The first epoch of each row (tracing) is not timed.

Reported per row: the median over rounds of wall and CPU seconds per step, and the
median of its per-round ratio to SupCon (speed = SupCon's seconds / the row's: >= 1.0
means at least as fast).

    python benchmarks/bench_supervised_speed.py                  # 7 rounds x 10 steps
    python benchmarks/bench_supervised_speed.py --quick          # 2 rounds x 2 steps, smoke
    python benchmarks/bench_supervised_speed.py --from-json benchmarks/results/supervised_speed.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import keras  # noqa: E402
from _common import (  # noqa: E402
    command_line,
    default_out,
    load_average,
    machine_info,
    parse_table_args,
    write_json,
)
from bench_quality import load, recipe_for  # noqa: E402

from tfcontrast.models import recipes  # noqa: E402

ROWS = ("supcon", "arcface", "proxy_anchor")


def build(row: str, x, y, batch_size: int):
    recipe = recipe_for(row, {"batch_size": batch_size}, {})
    keras.utils.set_random_seed(0)
    model, _ = recipes.build_model(recipe, x.shape[1:], seed=0, sample=x, labels=y)
    recipes.compile_model(model, recipe, len(x))
    return model


def epoch(model, x, y, batch_size: int) -> tuple[float, float]:
    """Wall and CPU seconds of one `fit` epoch over `x`."""
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10, help="batches per timed epoch")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="2 rounds x 2 steps (smoke)")
    args = parse_table_args(parser, argv, table)
    if args is None:
        return
    settings = ("rounds", "steps", "batch_size")
    default = not args.quick and all(getattr(args, k) == parser.get_default(k) for k in settings)
    if args.quick:
        args.rounds, args.steps = 2, 2
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    x, y, _, _ = load("usps", "test")
    n = args.steps * args.batch_size
    if n > len(x):
        parser.error(f"--steps x --batch_size = {n} exceeds the {len(x)} USPS training images")
    x, y = x[:n], y[:n]
    models = {row: build(row, x, y, args.batch_size) for row in ROWS}
    for model in models.values():  # tracing, not timed
        epoch(model, x, y, args.batch_size)
    samples = {row: [] for row in ROWS}
    for r in range(args.rounds):
        order = ROWS[r % len(ROWS) :] + ROWS[: r % len(ROWS)]
        for row in order:
            wall, cpu = epoch(models[row], x, y, args.batch_size)
            samples[row].append({"wall": wall / args.steps, "cpu": cpu / args.steps})
        print(
            f"round {r + 1}/{args.rounds}: "
            + ", ".join(f"{row} {samples[row][-1]['wall']:.3f} s/step" for row in ROWS)
        )
    rows = []
    for row in ROWS:
        speed = [  # per round: SupCon's seconds / the row's
            base["wall"] / mine["wall"] for base, mine in zip(samples["supcon"], samples[row])
        ]
        rows.append(
            {
                "row": row,
                "wall_s_per_step": statistics.median(s["wall"] for s in samples[row]),
                "cpu_s_per_step": statistics.median(s["cpu"] for s in samples[row]),
                "speed_vs_supcon": statistics.median(speed),
                "speed_vs_supcon_per_round": speed,
                "samples": samples[row],
            }
        )
    results = {
        "benchmark": "bench_supervised_speed",
        "command": command_line(),
        "machine": machine_info(),
        "load_average_end": load_average(),
        "settings": {k: getattr(args, k) for k in settings},
        "rows": rows,
    }
    print(table(results))
    out = args.out or default_out("supervised_speed", scratch=not default)
    write_json(out, results)
    print(f"wrote {out}")


def table(results) -> str:
    batch = results["settings"]["batch_size"]
    lines = [
        f"| loss (USPS, batch {batch}, two views) | wall s / step | CPU s / step "
        "| speed vs SupCon (>= 1.0: as fast) | per round |",
        "|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        rounds = ", ".join(f"{v:.2f}" for v in r["speed_vs_supcon_per_round"])
        lines.append(
            f"| {r['row']} | {r['wall_s_per_step']:.3f} | {r['cpu_s_per_step']:.3f} "
            f"| {r['speed_vs_supcon']:.2f}x | {rounds} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
