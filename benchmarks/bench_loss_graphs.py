"""Supervised losses, graph against graph in one process: tfcontrast vs TF Similarity.

`bench_losses.py` times each library in its own worker processes. At the overhead-bound
sizes (1-2 ms a call) one worker process runs 15-25% faster or slower than the next for
its whole life, so a ratio near 1 there depends on which processes a run got. This
benchmark takes the process out of the comparison: each library's worker exports the
step that `bench_losses.py` times (the `tf.function` of the loss call and its gradient
with respect to the embeddings, traced to a `GraphDef`), and one fresh process imports
both graphs and times them in alternating chunks of calls, on the same inputs, through
the same call path (`peers/graph_ab.py`). A cycle times one chunk of each; its ratio is
TF Similarity's time over tfcontrast's (> 1: tfcontrast faster), and the table gives
the median over all cycles of all processes.

It measures the graphs: the Python side of a `tf.function` call (the same TensorFlow
code for both libraries, included by `bench_losses.py`) is replaced by the call of an
imported graph, which is again the same for both. The TensorFlow versions of the two
virtual environments must match. `--baseline DIR` adds a third graph, tfcontrast's own
step built from another checkout (e.g. `git worktree add DIR COMMIT`), to measure a
change against the code before it. The batches are those of `bench_losses.py` (B / 8
classes of 8); `--lone 0.25` gives a quarter of the anchors a label of their own, so
that they have no positive (the graphs do not change, their inputs do).

    python benchmarks/bench_loss_graphs.py     # all rows at B = 256 and 1024 -> results/loss_graphs.json
    python benchmarks/bench_loss_graphs.py --only SoftNearestNeighborLoss --batches 256
    python benchmarks/bench_loss_graphs.py --from-json benchmarks/results/loss_graphs.json
    python benchmarks/bench_loss_graphs.py --only SoftNearest --baseline /tmp/old  # vs a commit
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
from bench_losses import ROWS, SIDES  # noqa: E402

AB_SCRIPT = C.PEERS / "graph_ab.py"


#: The side a run's ratios are taken against.
OURS = "tfcontrast"
LABELS = {**C.LABELS, "baseline": "baseline"}


def _baseline_worker(checkout: Path) -> C.Worker:
    """A tfcontrast worker importing the library from `checkout` (its root, holding
    `tfcontrast/`). A wrong path would silently import our own copy instead, so the
    worker's reported checkout must be `checkout`."""
    checkout = Path(checkout).resolve()
    if not (checkout / "tfcontrast" / "__init__.py").is_file():
        raise SystemExit(f"--baseline {checkout}: no tfcontrast/__init__.py there")
    worker = C.Worker(OURS, C.LOG_DIR, library_path=str(checkout))
    reported = worker.info.get("checkout")
    if reported is None or Path(reported).resolve() != checkout:
        worker.close()
        raise SystemExit(f"--baseline {checkout}: the worker imported tfcontrast from {reported}")
    return worker


def export_graphs(rows, configs, baseline=None, log=print) -> tuple[list[dict], dict]:
    """One job per (row, batch, dim) with each side's exported step graph, and the
    workers' infos. `baseline`: a checkout whose tfcontrast exports a third graph."""
    workers = C.open_workers(SIDES, C.LOG_DIR, log=log)
    try:
        missing = [s for s in SIDES if s not in workers]
        if missing:
            raise SystemExit(f"bench_loss_graphs: needs both sides; missing {missing}")
        cases = {side: side for side in SIDES}
        if baseline is not None:
            workers["baseline"] = _baseline_worker(baseline)
            cases["baseline"] = OURS
        infos = {side: w.info for side, w in workers.items()}
        versions = {side: info.get("tensorflow") for side, info in infos.items()}
        if len(set(versions.values())) > 1:
            raise SystemExit(f"bench_loss_graphs: TensorFlow versions differ: {versions}")
        jobs = []
        for batch, dim in configs:
            for row in rows:
                graphs = {}
                for side, worker in workers.items():
                    reply = worker.graph(row["cases"][cases[side]], batch, dim)
                    if not reply.get("ok"):
                        raise SystemExit(f"{side} {row['name']} B={batch}: {reply.get('error')}")
                    graphs[side] = {k: reply[k] for k in ("graph_def", "inputs", "outputs")}
                key = {"name": row["name"], "batch": batch, "dim": dim}
                jobs.append({"key": key, "batch": batch, "dim": dim, "graphs": graphs})
    finally:
        for w in workers.values():
            w.close()
    return jobs, infos


def run_ab(jobs, cycles: int, chunk_s: float, lone: float, timeout: float = 3600) -> list[dict]:
    """Runs every job in one fresh process (`peers/graph_ab.py`)."""
    request = json.dumps({"jobs": jobs, "cycles": cycles, "chunk_s": chunk_s, "lone": lone})
    proc = subprocess.run(
        [C.PYTHONS[OURS], str(AB_SCRIPT)],
        input=request,
        capture_output=True,
        text=True,
        cwd=str(C.PEERS),
        env=C._env(OURS),
        timeout=timeout,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(C.MARKER):
            return json.loads(line[len(C.MARKER) :])["results"]
    raise RuntimeError(f"graph_ab.py exited {proc.returncode}: {proc.stderr[-2000:]}")


def summarize(key: dict, per_process: list[dict]) -> dict:
    """Pools one job's chunks over the processes; a ratio for each side against ours."""
    errors = [r["error"] for r in per_process if "error" in r]
    if errors:
        return {**key, "error": errors[0]}
    sides = list(per_process[0]["chunks_s"])
    times = {side: [t for r in per_process for t in r["chunks_s"][side]] for side in sides}
    against = {}
    for side in sides:
        if side == OURS:
            continue
        ratios, process_ratios = [], []
        for r in per_process:
            cycle = [a / b for a, b in zip(r["chunks_s"][side], r["chunks_s"][OURS])]
            ratios += cycle
            process_ratios.append(statistics.median(cycle))
        against[side] = {
            "ratio": statistics.median(ratios),
            "ratio_of_medians": statistics.median(times[side]) / statistics.median(times[OURS]),
            "process_ratios": process_ratios,
            "cycles_faster": sum(q > 1.0 for q in ratios),
            "cycles": len(ratios),
        }
    return {
        **key,
        "median_ms": {side: C.median_ms(times[side]) for side in sides},
        "against": against,
        "values": per_process[0]["values"],
        "calls_per_chunk": [r["calls_per_chunk"] for r in per_process],
        "chunks_s": [r["chunks_s"] for r in per_process],
    }


def markdown(payload: dict) -> str:
    lines = [
        "| Loss | B | tfcontrast ms | against | its ms | ratio (median per cycle) "
        "| per process | cycles tfcontrast faster |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in payload["results"]:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['batch']} | error: {r['error'][:60]} ||||||")
            continue
        for side, a in r["against"].items():
            per_process = " / ".join(f"{q:.2f}" for q in a["process_ratios"])
            lines.append(
                f"| {r['name']} | {r['batch']} | {C.fmt_ms(r['median_ms'][OURS])} "
                f"| {LABELS[side]} | {C.fmt_ms(r['median_ms'][side])} "
                f"| {C.fmt_ratio(a['ratio'])} | {per_process} "
                f"| {a['cycles_faster']} of {a['cycles']} |"
            )
    s = payload["settings"]
    processes = f"{s['processes']} fresh process{'es' if s['processes'] > 1 else ''}"
    baseline = payload["libraries"].get("baseline")
    share = s.get("lone_anchors", 0.0)
    lone = f"{share:.0%} of the anchors without a positive; " if share else ""
    lines += [
        "",
        f"D = {s['dim']}; {lone}{processes}, each timing the graphs in {s['cycles']} alternating "
        f"cycles of one chunk each (>= {s['chunk_ms']:.0f} ms and >= 3 calls); ratio = "
        "their time / tfcontrast's (> 1: tfcontrast faster). 1-min load average "
        f"{payload['load_avg_1min']['start']:.2f}-{payload['load_avg_1min']['end']:.2f}, "
        f"{payload['machine']['date_utc']}."
        + (f" Baseline: tfcontrast at {baseline.get('commit')}." if baseline else ""),
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", help="batch sizes (default 256 1024)")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--only", help="run the rows whose name contains this text")
    parser.add_argument("--cycles", type=int, default=40, help="cycles per process (default 40)")
    parser.add_argument("--chunk-ms", type=float, default=30.0, help="chunk length (default 30)")
    parser.add_argument("--processes", type=int, default=3, help="fresh A/B processes (default 3)")
    parser.add_argument("--quick", action="store_true", help="B = 128, 1 process, 6 cycles")
    parser.add_argument(
        "--lone",
        type=float,
        default=0.0,
        help="fraction of anchors given a label of their own (no positive; default 0)",
    )
    parser.add_argument(
        "--baseline", type=Path, help="also time tfcontrast's graphs built from this checkout"
    )
    args = C.parse_table_args(parser, argv, markdown)
    if args is None:  # --from-json: the table was printed
        return 0
    if not 0.0 <= args.lone < 1.0:
        parser.error(f"--lone must be in [0, 1): a fraction of the anchors; got {args.lone}")
    rows = C.select_rows(parser, ROWS, args.only)
    batches = args.batches or ([128] if args.quick else [256, 1024])
    processes, cycles = (1, 6) if args.quick else (args.processes, args.cycles)
    # A subset (of rows or batches) never overwrites the full table's JSON unless --out
    # says so.
    partial = bool(args.quick or args.only or args.batches or args.baseline or args.lone)
    out = args.out or C.default_out("loss_graphs", partial)

    load_start = C.load_average()
    t0 = time.perf_counter()
    print(f"bench_loss_graphs: B={batches} D={args.dim} rows={len(rows)} load={load_start:.2f}")
    jobs, infos = export_graphs(rows, [(b, args.dim) for b in batches], args.baseline)
    per_job: dict = {}
    for p in range(processes):
        print(f"  A/B process {p + 1} of {processes}")
        for result in run_ab(jobs, cycles, args.chunk_ms / 1000.0, args.lone):
            per_job.setdefault(json.dumps(result["key"], sort_keys=True), []).append(result)
    results = [
        summarize(job["key"], per_job[json.dumps(job["key"], sort_keys=True)]) for job in jobs
    ]
    payload = {
        **C.run_header(
            "supervised metric losses, forward+backward graphs in one process, "
            "tfcontrast vs TF Similarity",
            infos,
        ),
        "settings": {
            "batches": batches,
            "dim": args.dim,
            "processes": processes,
            "cycles": cycles,
            "chunk_ms": args.chunk_ms,
            "baseline": None if args.baseline is None else str(args.baseline),
            "lone_anchors": args.lone,
            "threads": 2,
            "quick": args.quick,
        },
        "load_avg_1min": {"start": load_start, "end": C.load_average()},
        "wall_s": time.perf_counter() - t0,
        "rows": rows,
        "results": results,
    }
    C.write_json(out, payload)
    print(f"\nwrote {out}\n")
    print(markdown(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
