"""Self-supervised losses: tfcontrast vs TensorFlow Similarity 0.17.1 and lightly.

Forward + backward time at B = 512 and 2048, D = 128 and 2048, two views:
tfcontrast `NTXentLoss` / `VICRegLoss` / `BarlowTwinsLoss` / `NegativeCosineSimilarity`
against TF Similarity `SimCLRLoss` / `VicReg` / `Barlow` / `SimSiamLoss` (legacy Keras,
own venv) and lightly `NTXentLoss` / `VICRegLoss` / `BarlowTwinsLoss` /
`NegativeCosineSimilarity` (CPU PyTorch, own venv). TensorFlow sides: `tf.function
(jit_compile=False)` around the loss and `tf.GradientTape.gradient` with respect to the
views; lightly: eager forward and `backward()`. Same data, same temperature and weights,
2 intra-op threads everywhere, rounds alternating the order of the sides, medians.
Ratio = peer time / tfcontrast time (> 1: tfcontrast is faster).

    python benchmarks/bench_ssl_losses.py            # full: writes benchmarks/results/ssl_losses.json
    python benchmarks/bench_ssl_losses.py --quick    # smoke run (small B, few repeats, scratch file)
    python benchmarks/bench_ssl_losses.py --from-json benchmarks/results/ssl_losses.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

ROWS = [
    {
        "name": "NTXentLoss",
        "cases": {"tfcontrast": "ntxent", "tfsim": "simclr", "lightly": "ntxent"},
        "peers": "TF Sim SimCLRLoss, lightly NTXentLoss (temperature 0.1)",
    },
    {
        "name": "VICRegLoss",
        "cases": {"tfcontrast": "vicreg", "tfsim": "vicreg", "lightly": "vicreg"},
        "peers": "TF Sim VicReg, lightly VICRegLoss (25 / 25 / 1, eps 1e-4)",
    },
    {
        "name": "BarlowTwinsLoss",
        "cases": {"tfcontrast": "barlow", "tfsim": "barlow", "lightly": "barlow"},
        "peers": "TF Sim Barlow, lightly BarlowTwinsLoss (lambda 5e-3)",
    },
    {
        "name": "NegativeCosineSimilarity",
        "cases": {
            "tfcontrast": "negative_cosine",
            "tfsim": "simsiam",
            "lightly": "negative_cosine",
        },
        "peers": "TF Sim SimSiamLoss, lightly NegativeCosineSimilarity (stop-gradient target)",
    },
]
SIDES = ("tfcontrast", "tfsim", "lightly")


def _targets(records: list[dict]) -> dict:
    tfsim_slower, lightly_slower = [], []
    for r in records:
        tag = f"{r['name']} B={r['batch']} D={r['dim']}"
        if r["ratios"].get("tfsim") is not None and r["ratios"]["tfsim"] < 1.0:
            tfsim_slower.append(tag)
        # "Within 1.2x of lightly": our time <= 1.2 * lightly's, i.e. ratio >= 1 / 1.2.
        if r["ratios"].get("lightly") is not None and r["ratios"]["lightly"] < 1.0 / 1.2:
            lightly_slower.append(tag)
    return {
        "at_or_below_tfsim": not tfsim_slower,
        "slower_than_tfsim": tfsim_slower,
        "within_1.2x_of_lightly": not lightly_slower,
        "more_than_1.2x_slower_than_lightly": lightly_slower,
    }


def markdown(payload: dict) -> str:
    head = [
        "Loss",
        "B",
        "D",
        "tfcontrast ms",
        "TF Sim ms",
        "TF Sim / ours",
        "lightly ms",
        "lightly / ours",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in ROWS:
        for rec in payload["results"]:
            if rec["name"] != row["name"]:
                continue
            sides = rec["sides"]
            lines.append(
                "| "
                + " | ".join(
                    [
                        row["name"],
                        str(rec["batch"]),
                        str(rec["dim"]),
                        C.fmt_ms(sides.get("tfcontrast", {}).get("median_ms")),
                        C.fmt_ms(sides.get("tfsim", {}).get("median_ms")),
                        C.fmt_ratio(rec["ratios"].get("tfsim")),
                        C.fmt_ms(sides.get("lightly", {}).get("median_ms")),
                        C.fmt_ratio(rec["ratios"].get("lightly")),
                    ]
                )
                + " |"
            )
    loads = [r["load_avg_1min"] for r in payload["results"]]
    skipped = payload["settings"].get("skipped") or []
    lines.append("")
    lines.append(
        f"Two views, medians of {C.rounds_text(payload)}; ratio = "
        f"peer / tfcontrast (> 1: tfcontrast faster). 1-min load average "
        f"{min(loads):.2f}-{max(loads):.2f} on {payload['machine']['cpu_count']} CPUs "
        f"({payload['machine']['cpu']}), {payload['machine']['date_utc']}."
        + (f" Skipped: {', '.join(skipped)}." if skipped else "")
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small B and D, few repeats")
    parser.add_argument("--batches", type=int, nargs="+", help="default 512 2048")
    parser.add_argument("--dims", type=int, nargs="+", help="default 128 2048")
    parser.add_argument(
        "--rounds", type=int, help="alternating rounds per process (default 3, quick 2)"
    )
    parser.add_argument(
        "--processes", type=int, help="fresh worker processes per side, pooled (default 3, quick 1)"
    )
    args = C.parse_table_args(parser, argv, markdown)
    if args is None:  # --from-json: the table was printed
        return 0

    quick = args.quick
    batches = args.batches or ([128] if quick else [512, 2048])
    dims = args.dims or ([64] if quick else [128, 2048])
    rounds = args.rounds or (2 if quick else 3)
    processes = args.processes or (1 if quick else 3)
    timing = (
        {"min_repeats": 2, "max_repeats": 5, "min_time": 0.05}
        if quick
        else {"min_repeats": 3, "max_repeats": 20, "min_time": 0.5}
    )
    out = args.out or C.default_out("ssl_losses", quick)
    configs = [(b, d) for b in batches for d in dims]

    print(f"bench_ssl_losses: B={batches} D={dims} rounds={rounds} load={C.load_average():.2f}")
    load_start = C.load_average()
    t0 = time.perf_counter()
    records, infos = C.time_rows(SIDES, ROWS, configs, rounds, timing, processes)
    skipped = [
        f"{r['name']} B={r['batch']} D={r['dim']} {C.LABELS[s]}: {i['error']}"
        for r in records
        for s, i in r["sides"].items()
        if i["error"]
    ]

    payload = {
        **C.run_header(
            "self-supervised losses, forward+backward, tfcontrast vs TF Similarity and lightly",
            infos,
        ),
        "settings": {
            "batches": batches,
            "dims": dims,
            "views": 2,
            "rounds": rounds,
            "processes": processes,
            "timing": timing,
            "threads": 2,
            "jit_compile": False,
            "quick": quick,
            "skipped": skipped,
        },
        "load_avg_1min": {"start": load_start, "end": C.load_average()},
        "wall_s": time.perf_counter() - t0,
        "rows": ROWS,
        "results": records,
    }
    payload["targets"] = _targets(records)
    C.write_json(out, payload)
    print(f"\nwrote {out}\n")
    print(markdown(payload))
    print(f"\ntargets: {json.dumps(payload['targets'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
