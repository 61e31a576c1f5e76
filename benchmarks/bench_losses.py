"""Supervised metric losses: tfcontrast vs TensorFlow Similarity 0.17.1.

Forward + backward time (`tf.function(jit_compile=False)` around the loss and
`tf.GradientTape.gradient` with respect to the embeddings) at B = 256 and 1024, D = 128,
each library in its own process (TF Similarity in its own venv with tf-keras and
`TF_USE_LEGACY_KERAS=1`), 2 intra-op threads on both sides, the same data (labels with
B / 8 classes of 8, L2-normalised Gaussian embeddings), warm-up calls excluded, rounds
alternating the order of the two sides, medians over all timed calls. Ratio =
TF Similarity time / tfcontrast time (> 1: tfcontrast is faster). Peak memory at
B = 4096: the increase of the peak RSS (`ru_maxrss`) of a fresh process after a warm-up
at B = 64, one process per (library, loss).

    python benchmarks/bench_losses.py            # full run: writes benchmarks/results/losses.json
    python benchmarks/bench_losses.py --quick    # smoke run (small B, few repeats, scratch file)
    python benchmarks/bench_losses.py --from-json benchmarks/results/losses.json  # table only
    python benchmarks/bench_losses.py --only SoftNearestNeighborLoss --batches 256 \
        --processes 6 --no-memory --out benchmarks/results/losses_snn_b256.json  # one row
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
        "name": "TripletLoss batch-hard",
        "cases": {"tfcontrast": "triplet_hard", "tfsim": "triplet_hard"},
        "ours": 'TripletLoss(margin=0.2, miner="hard")',
        "theirs": "TripletLoss(margin=0.2, positive 'hard', negative 'hard')",
    },
    {
        "name": "TripletLoss semi-hard",
        "cases": {"tfcontrast": "triplet_semi_hard", "tfsim": "triplet_semi_hard"},
        "ours": 'TripletLoss(margin=0.2, miner=SemiHardMiner(positives="hard"))',
        "theirs": "TripletLoss(margin=0.2, positive 'hard', negative 'semi-hard')",
    },
    {
        "name": "MultiSimilarityLoss",
        "cases": {"tfcontrast": "multi_similarity", "tfsim": "multi_similarity"},
        "ours": "MultiSimilarityLoss(2, 40, lmda=0.5, miner=MultiSimilarityMiner(0.1))",
        "theirs": "MultiSimilarityLoss(alpha=2, beta=40, epsilon=0.1, lmda=0.5, center=1)",
    },
    {
        "name": "CircleLoss",
        "cases": {"tfcontrast": "circle", "tfsim": "circle"},
        "ours": "CircleLoss(margin=0.4, gamma=80)",
        "theirs": "CircleLoss(margin=0.4, gamma=80)",
    },
    {
        "name": "SoftNearestNeighborLoss",
        "cases": {"tfcontrast": "soft_nearest_neighbor", "tfsim": "soft_nearest_neighbor"},
        "ours": 'SoftNearestNeighborLoss(1.0, distance="squared_euclidean")',
        "theirs": 'SoftNearestNeighborLoss(distance="sql2", temperature=1)',
    },
    {
        "name": "PNLoss (ours: TripletLoss semi-hard)",
        "cases": {"tfcontrast": "triplet_semi_hard", "tfsim": "pn"},
        "ours": "TripletLoss semi-hard (closest: tfcontrast has no PN loss; PN is this triplet "
        "with d_an replaced by min(d_an, d_pn))",
        "theirs": "PNLoss(margin=0.2, positive 'hard', negative 'semi-hard')",
    },
]
SIDES = ("tfcontrast", "tfsim")


def _targets(records: list[dict]) -> dict:
    slower = [
        f"{r['name']} B={r['batch']}"
        for r in records
        if r["ratios"].get("tfsim") is not None and r["ratios"]["tfsim"] < 1.0
    ]
    triplet = {}
    for r in records:
        if r["batch"] == 1024 and r["name"] in ("TripletLoss batch-hard", "TripletLoss semi-hard"):
            triplet[r["name"]] = r["ratios"].get("tfsim")
    return {
        "no_loss_slower_than_tfsim": not slower,
        "slower": slower,
        "triplet_ratio_at_1024": triplet,
        # None when the run measured no triplet row at B = 1024 (`--only`, `--batches`).
        "triplet_at_least_1.5x_at_1024": (
            all(v is not None and v >= 1.5 for v in triplet.values()) if triplet else None
        ),
    }


def markdown(payload: dict) -> str:
    records = payload["results"]
    batches = sorted({r["batch"] for r in records})
    memory = {(m["name"], m["side"]): m for m in payload.get("memory", [])}
    mem_batch = payload["settings"].get("memory_batch")
    head = ["Loss"]
    for b in batches:
        head += [f"B={b} tfcontrast ms", "TF Sim ms", "ratio"]
    if memory:
        head += [f"peak MiB B={mem_batch} tfcontrast", "TF Sim"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in payload.get("rows", ROWS):
        cells = [row["name"]]
        for b in batches:
            rec = next((r for r in records if r["name"] == row["name"] and r["batch"] == b), None)
            if rec is None:
                cells += ["n/a"] * 3
                continue
            cells += [
                C.fmt_ms(rec["sides"].get("tfcontrast", {}).get("median_ms")),
                C.fmt_ms(rec["sides"].get("tfsim", {}).get("median_ms")),
                C.fmt_ratio(rec["ratios"].get("tfsim")),
            ]
        if memory:
            for side in SIDES:
                m = memory.get((row["name"], side))
                cells.append(C.fmt_mb(m.get("increase_mb")) if m and m.get("ok") else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    loads = [r["load_avg_1min"] for r in records]
    lines.append("")
    lines.append(
        f"D = {payload['settings']['dim']}, medians of {C.rounds_text(payload)}; "
        f"ratio = TF Similarity / tfcontrast (> 1: tfcontrast faster). "
        f"1-min load average {min(loads):.2f}-{max(loads):.2f} on "
        f"{payload['machine']['cpu_count']} CPUs ({payload['machine']['cpu']}), "
        f"{payload['machine']['date_utc']}."
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small B, few repeats")
    parser.add_argument("--batches", type=int, nargs="+", help="batch sizes (default 256 1024)")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument(
        "--rounds", type=int, help="alternating rounds per process (default 3, quick 2)"
    )
    parser.add_argument("--memory-batch", type=int, help="B for peak memory (default 4096)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    parser.add_argument(
        "--processes", type=int, help="fresh worker processes per side, pooled (default 3, quick 1)"
    )
    parser.add_argument(
        "--only", help="run the rows whose name contains this text (writes a scratch JSON)"
    )
    args = C.parse_table_args(parser, argv, markdown)
    if args is None:  # --from-json: the table was printed
        return 0

    quick = args.quick
    batches = args.batches or ([128] if quick else [256, 1024])
    rounds = args.rounds or (2 if quick else 3)
    processes = args.processes or (1 if quick else 3)
    memory_batch = args.memory_batch or (512 if quick else 4096)
    timing = (
        {"min_repeats": 2, "max_repeats": 5, "min_time": 0.05}
        if quick
        else {"min_repeats": 5, "max_repeats": 30, "min_time": 0.5}
    )
    rows = C.select_rows(parser, ROWS, args.only)
    # A subset (of rows or batches) never overwrites the full table's JSON unless --out
    # says so.
    partial = quick or args.only is not None or args.batches is not None
    out = args.out or C.default_out("losses", partial)

    print(f"bench_losses: B={batches} D={args.dim} rounds={rounds} load={C.load_average():.2f}")
    load_start = C.load_average()
    t0 = time.perf_counter()
    configs = [(b, args.dim) for b in batches]
    records, infos = C.time_rows(SIDES, rows, configs, rounds, timing, processes)

    memory = []
    if not args.no_memory:
        print(f"peak memory at B={memory_batch} (fresh process per library and loss):")
        for i, row in enumerate(rows):
            order = SIDES if i % 2 == 0 else SIDES[::-1]
            for side in order:
                if side not in infos:
                    continue
                m = C.measure_memory(side, row["cases"][side], memory_batch, args.dim)
                m.update({"name": row["name"], "side": side})
                memory.append(m)
                shown = C.fmt_mb(m.get("increase_mb")) if m.get("ok") else m.get("error")
                print(f"  {row['name']:<34} {C.LABELS[side]:<14} +{shown} MiB")

    payload = {
        **C.run_header(
            "supervised metric losses, forward+backward, tfcontrast vs TF Similarity",
            infos,
        ),
        "settings": {
            "batches": batches,
            "dim": args.dim,
            "rounds": rounds,
            "processes": processes,
            "timing": timing,
            "threads": 2,
            "jit_compile": False,
            "memory_batch": memory_batch,
            "quick": quick,
        },
        "load_avg_1min": {"start": load_start, "end": C.load_average()},
        "wall_s": time.perf_counter() - t0,
        "rows": rows,
        "results": records,
        "memory": memory,
        "memory_method": "peak RSS (ru_maxrss) of a fresh process running the case at the "
        "memory batch, minus the peak after a warm-up at B=64",
    }
    payload["targets"] = _targets(records)
    C.write_json(out, payload)
    print(f"\nwrote {out}\n")
    print(markdown(payload))
    print(f"\ntargets: {json.dumps(payload['targets'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
