"""The quality table of `benchmarks/README.md` from `bench_quality.py` result files (test splits).

Files are read in the order given; a later file's row replaces an earlier one for the same
data set and method (a re-run after a change). A run with local crops (`local_views`) is a
method of its own ("DINO, multi-crop"). Each row names the file it comes from.

    python benchmarks/quality_table.py results/quality.json results/quality_usps_round2.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

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
    "proxy_anchor": "ProxyAnchor (labels)",
}
DATASETS = {"usps": "USPS", "digits": "digits 8x8"}


def table(paths) -> str:
    rows = {}
    for path in paths:
        results = json.loads(Path(path).read_text())
        if results.get("split") != "test":
            raise ValueError(f"{path}: not a test-split run (split={results.get('split')!r}).")
        for row in results["rows"]:
            method = row["row"]
            if row.get("recipe", {}).get("local_views"):
                method += "_multi_crop"
            rows[(row["dataset"], method)] = (Path(path).name, row)
    lines = [
        "| data | method | epochs | train CPU s | wall s | 1-NN | 10 labels/class 1-NN "
        "| linear probe | file |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    order = list(NAMES)
    for dataset in DATASETS:
        keys = sorted(
            (k for k in rows if k[0] == dataset),
            key=lambda k: order.index(k[1]) if k[1] in order else len(order),
        )
        for key in keys:
            name, row = rows[key]
            cells = [
                DATASETS[dataset],
                NAMES.get(key[1], key[1]),
                row.get("epochs", ""),
                row.get("cpu_seconds", ""),
                row.get("wall_seconds", ""),
                f"{row['1nn']:.3f}",
                f"{row['10_labels_1nn']:.3f}",
                f"{row['linear_probe']:.3f}",
                "" if row["row"] == "raw_pixels" else f"`{name}`",
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(sys.argv[1:]))
