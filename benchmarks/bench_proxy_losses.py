"""Proxy and angular-margin losses: tfcontrast vs pytorch-metric-learning (pml).

Forward + backward time of `ArcFaceLoss`, `CosFaceLoss`, `SubCenterArcFaceLoss` (k = 3),
`ProxyAnchorLoss`, `ProxyNCALoss` and `NormalizedSoftmaxLoss` at B = 1024, 100 classes,
D = 128, with the gradient of the loss with respect to the embeddings *and* the class
weights / proxies, as in training. tfcontrast: `tf.function(jit_compile=False)` around
the loss's `__call__` and `tf.GradientTape.gradient` w.r.t. the embeddings and the
`Proxies` layer's variable (`peers/tfcontrast_proxy_worker.py`); pml: eager forward and
`backward()` into the embeddings and the loss's `Parameter`, on CPU PyTorch in its own
venv (`peers/pml_worker.py`). Both sides start from the same labels, embeddings and
proxies and the same hyper-parameters (`peers/_proxy_protocol.py`), so the loss values
in the JSON agree. 2 intra-op threads per side, warm-up calls excluded, rounds
alternating the order of the sides inside one pair of worker processes, repeated in fresh
processes and pooled; medians of all timed calls (see `_common.py`).

The table gives `tfcontrast / pml` (the target of issue 21: <= 1.2); the JSON's
`ratios` keep the other benchmarks' convention, `pml / tfcontrast`.

    python benchmarks/bench_proxy_losses.py            # full run: benchmarks/results/proxy_losses.json
    python benchmarks/bench_proxy_losses.py --quick    # smoke run (few repeats, scratch file)
    python benchmarks/bench_proxy_losses.py --only SubCenter --processes 2
    python benchmarks/bench_proxy_losses.py --from-json benchmarks/results/proxy_losses.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent / "peers"))

import _common as C  # noqa: E402
from _proxy_protocol import NUM_CLASSES  # noqa: E402  (NumPy only)

# This benchmark's workers: tfcontrast's proxy cases, and pml in the torch peer venv.
C.SCRIPTS["tfcontrast"] = C.PEERS / "tfcontrast_proxy_worker.py"
C.SCRIPTS["pml"] = C.PEERS / "pml_worker.py"
C.PYTHONS["pml"] = C.PYTHONS["lightly"]  # the same venv (`../shared/peers/setup.sh`)
C.LABELS["pml"] = "pml"

SIDES = ("tfcontrast", "pml")
TARGET = 1.2  # tfcontrast time / pml time


def _row(name, case, ours, theirs):
    return {
        "name": name,
        "cases": {"tfcontrast": case, "pml": case},
        "ours": ours,
        "theirs": theirs,
    }


ROWS = [
    _row(
        "ArcFaceLoss",
        "arcface",
        "ArcFaceLoss(100, 128, margin=0.5, scale=64)",
        "ArcFaceLoss(100, 128, margin=28.648 (degrees), scale=64)",
    ),
    _row(
        "CosFaceLoss",
        "cosface",
        "CosFaceLoss(100, 128, margin=0.35, scale=64)",
        "CosFaceLoss(100, 128, margin=0.35, scale=64)",
    ),
    _row(
        "SubCenterArcFaceLoss",
        "subcenter_arcface",
        "SubCenterArcFaceLoss(100, 128, num_centers=3, margin=0.5, scale=64)",
        "SubCenterArcFaceLoss(num_classes=100, embedding_size=128, sub_centers=3, "
        "margin=28.648, scale=64)",
    ),
    _row(
        "ProxyAnchorLoss",
        "proxy_anchor",
        "ProxyAnchorLoss(100, 128, margin=0.1, alpha=32)",
        "ProxyAnchorLoss(100, 128, margin=0.1, alpha=32)",
    ),
    _row(
        "ProxyNCALoss",
        "proxy_nca",
        "ProxyNCALoss(100, 128, softmax_scale=1)",
        "ProxyNCALoss(100, 128, softmax_scale=1)",
    ),
    _row(
        "NormalizedSoftmaxLoss",
        "normalized_softmax",
        "NormalizedSoftmaxLoss(100, 128, temperature=0.05)",
        "NormalizedSoftmaxLoss(100, 128, temperature=0.05)",
    ),
]


def _ours_over_pml(record: dict):
    ratio = record["ratios"].get("pml")
    return 1.0 / ratio if ratio else None


def _targets(records: list[dict]) -> dict:
    ratios = {f"{r['name']} B={r['batch']}": _ours_over_pml(r) for r in records}
    slower = [k for k, v in ratios.items() if v is None or v > TARGET]
    return {
        "tfcontrast_over_pml": ratios,
        f"all_within_{TARGET}x_of_pml": not slower,
        f"more_than_{TARGET}x_slower_or_missing": slower,
    }


def markdown(payload: dict) -> str:
    lines = [
        "| loss | B | tfcontrast ms | pml ms | tfcontrast / pml | loss value (tfcontrast / pml) |",
        "|---|---|---|---|---|---|",
    ]
    for rec in payload["results"]:
        ours, theirs = rec["sides"].get("tfcontrast", {}), rec["sides"].get("pml", {})
        values = " / ".join(
            "n/a" if s.get("value") is None else f"{s['value']:.4f}" for s in (ours, theirs)
        )
        ratio = _ours_over_pml(rec)
        lines.append(
            f"| {rec['name']} | {rec['batch']} | {C.fmt_ms(ours.get('median_ms'))} | "
            f"{C.fmt_ms(theirs.get('median_ms'))} | "
            f"{'n/a' if ratio is None else f'{ratio:.2f}'} | {values} |"
        )
    loads = [r["load_avg_1min"] for r in payload["results"]]
    s = payload["settings"]
    lines.append("")
    lines.append(
        f"{s['num_classes']} classes, D = {s['dim']}; medians of {C.rounds_text(payload)}; "
        f"target tfcontrast / pml <= {TARGET}. 1-min load average "
        f"{min(loads):.2f}-{max(loads):.2f} on {payload['machine']['cpu_count']} CPUs "
        f"({payload['machine']['cpu']}), {payload['machine']['date_utc']}."
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, scratch file")
    parser.add_argument("--batches", type=int, nargs="+", help="batch sizes (default 1024)")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--rounds", type=int, help="alternating rounds per process (default 4)")
    parser.add_argument(
        "--processes", type=int, help="fresh worker processes per side, pooled (default 3)"
    )
    parser.add_argument("--only", help="the rows whose name contains this text (scratch JSON)")
    args = C.parse_table_args(parser, argv, markdown)
    if args is None:
        return 0

    quick = args.quick
    batches = args.batches or [1024]
    rounds = args.rounds or (2 if quick else 4)
    processes = args.processes or (1 if quick else 3)
    timing = (
        {"min_repeats": 2, "max_repeats": 5, "min_time": 0.05}
        if quick
        else {"min_repeats": 5, "max_repeats": 40, "min_time": 0.5}
    )
    rows = C.select_rows(parser, ROWS, args.only)
    partial = quick or args.only is not None or args.batches is not None
    out = args.out or C.default_out("proxy_losses", partial)

    print(f"bench_proxy_losses: B={batches} D={args.dim} rounds={rounds} x {processes}")
    load_start = C.load_average()
    t0 = time.perf_counter()
    configs = [(b, args.dim) for b in batches]
    records, infos = C.time_rows(SIDES, rows, configs, rounds, timing, processes)
    payload = {
        **C.run_header(
            "proxy / angular-margin losses, forward+backward (grads w.r.t. embeddings and "
            "proxies), tfcontrast vs pytorch-metric-learning",
            infos,
        ),
        "settings": {
            "batches": batches,
            "dim": args.dim,
            "num_classes": NUM_CLASSES,
            "rounds": rounds,
            "processes": processes,
            "timing": timing,
            "threads": 2,
            "jit_compile": False,
            "quick": quick,
        },
        "load_avg_1min": {"start": load_start, "end": C.load_average()},
        "wall_s": time.perf_counter() - t0,
        "note": "ratios: pml / tfcontrast (> 1: tfcontrast faster); the table and targets "
        "give tfcontrast / pml",
        "rows": rows,
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
