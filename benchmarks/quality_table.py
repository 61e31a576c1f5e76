"""The quality table of `benchmarks/README.md` from `bench_quality.py` result files (test splits).

Files are read in the order given. A later file's row for the same data set and method
replaces the earlier one (a re-run after a change), unless it is the same recipe trained
with another seed (`bench_quality.py --seed`): then the row is the mean over the seeds,
with the number of seeds, the 1-NN range and the range of the seconds beside it. A run
with local crops (`local_views`) is a method of its own ("DINO, multi-crop"). Each row
names the files it comes from.

    python benchmarks/quality_table.py results/quality.json results/quality_usps_round2.json
    python benchmarks/quality_table.py --seeds FILES...   # the rows with several seeds, by seed
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

NAMES = {
    "raw_pixels": "raw pixels",
    "simclr": "SimCLR",
    "moco_v2": "MoCo v2",
    "moco_v3": "MoCo v3",
    "byol": "BYOL",
    "simsiam": "SimSiam",
    "vicreg": "VICReg",
    "barlow_twins": "Barlow Twins",
    "nnclr": "NNCLR",
    "dino": "DINO",
    "dino_multi_crop": "DINO, multi-crop",
    "swav": "SwAV",
    "supcon": "SupCon (labels)",
    "triplet": "triplet, semi-hard (labels)",
    "triplet_batch_hard": "triplet, batch-hard (labels)",
    "multi_similarity": "multi-similarity (labels)",
    "arcface": "ArcFace (labels)",
    "cosface": "CosFace (labels)",
    "subcenter_arcface": "Sub-center ArcFace (labels)",
    "normalized_softmax": "NormalizedSoftmax (labels)",
    "proxy_nca": "ProxyNCA (labels)",
    "proxy_anchor": "ProxyAnchor (labels)",
}
DATASETS = {"usps": "USPS", "digits": "digits 8x8"}
SCORES = ("1nn", "10_labels_1nn", "linear_probe")


def same_recipe(a: dict, b: dict) -> bool:
    """Equal on the settings both runs record (newer runs record settings added since)."""
    return all(a[key] == b[key] for key in a.keys() & b.keys())


def collect(paths) -> dict:
    """`{(dataset, method): [(file name, row, seed), ...]}`: the runs each table row averages."""
    runs = {}
    for path in paths:
        results = json.loads(Path(path).read_text())
        if results.get("split") != "test":
            raise ValueError(f"{path}: not a test-split run (split={results.get('split')!r}).")
        seed = results.get("seed", 0)  # files written before the key ran the default seed
        for row in results["rows"]:
            method = row["row"]
            if row.get("recipe", {}).get("local_views"):
                method += "_multi_crop"
            key, run = (row["dataset"], method), (Path(path).name, row, seed)
            earlier = runs.get(key, [])
            another_seed = (
                earlier
                and "recipe" in row
                and seed not in {s for _, _, s in earlier}
                and same_recipe(earlier[0][1]["recipe"], row["recipe"])
            )
            runs[key] = [*earlier, run] if another_seed else [run]
    return runs


def _seconds(rows, field):
    """One run's seconds, or the range over seeds (runs on other machines or loads: a
    mean would hide that)."""
    values = [r[field] for r in rows if r.get(field) not in (None, "")]
    if len(values) < 2:
        return values[0] if values else ""
    return f"{min(values):.0f}-{max(values):.0f}"


def table(paths) -> str:
    runs = collect(paths)
    lines = [
        "| data | method | seeds | epochs | train CPU s | wall s | 1-NN | 10 labels/class 1-NN "
        "| linear probe | files |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = list(NAMES)
    for dataset in DATASETS:
        keys = sorted(
            (k for k in runs if k[0] == dataset),
            key=lambda k: order.index(k[1]) if k[1] in order else len(order),
        )
        for key in keys:
            names = list(dict.fromkeys(name for name, _, _ in runs[key]))
            rows = [row for _, row, _ in runs[key]]
            means = {s: float(np.mean([r[s] for r in rows])) for s in SCORES}
            nn = f"{means['1nn']:.3f}"
            if len(rows) > 1:
                nn += f" ({min(r['1nn'] for r in rows):.3f}-{max(r['1nn'] for r in rows):.3f})"
            trained = rows[0]["row"] != "raw_pixels"
            cells = [
                DATASETS[dataset],
                NAMES.get(key[1], key[1]),
                len(rows) if trained else "",
                rows[0].get("epochs", ""),
                _seconds(rows, "cpu_seconds"),
                _seconds(rows, "wall_seconds"),
                nn,
                f"{means['10_labels_1nn']:.3f}",
                f"{means['linear_probe']:.3f}",
                ", ".join(f"`{name}`" for name in names) if trained else "",
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def seed_table(paths) -> str:
    """The rows trained with several seeds, one column per seed (1-NN, then 10 labels per
    class and the linear probe as `a / b / ...` in seed order)."""
    runs = {k: sorted(v, key=lambda run: run[2]) for k, v in collect(paths).items()}
    runs = {k: v for k, v in runs.items() if len(v) > 1}
    seeds = sorted({seed for v in runs.values() for _, _, seed in v})
    lines = [
        "| data | method | "
        + " | ".join(f"1-NN seed {seed}" for seed in seeds)
        + " | 1-NN mean | 10 labels/class by seed | linear probe by seed |",
        "|---" * (len(seeds) + 5) + "|",
    ]
    for key, v in runs.items():
        by_seed = {seed: row for _, row, seed in v}
        cells = [DATASETS[key[0]], NAMES.get(key[1], key[1])]
        cells += [f"{by_seed[seed]['1nn']:.3f}" if seed in by_seed else "" for seed in seeds]
        cells.append(f"{np.mean([row['1nn'] for row in by_seed.values()]):.3f}")
        for score in SCORES[1:]:
            cells.append(" / ".join(f"{row[score]:.3f}" for row in by_seed.values()))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--seeds"]:
        print(seed_table(sys.argv[2:]))
    else:
        print(table(sys.argv[1:]))
