"""Driver side of the loss benchmarks: worker processes, alternating timings, machine info.

Each library runs in its own process (and virtual environment), started once per
benchmark run; see `benchmarks/peers/_protocol.py` for the worker side. The driver asks
the workers in turn for timings of the same case on the same data, alternating which
side goes first in every round, and keeps every sample so that medians (and their
spread) can be reported. Only one worker computes at any time; the others wait on a
pipe.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
RESULTS = HERE / "results"
MARKER = "@@BENCH@@ "
#: Workers' stderr (TensorFlow / PyTorch logs) goes here, out of the results folder.
LOG_DIR = Path(os.environ.get("TMPDIR", "/tmp")) / "tfcontrast-bench" / "logs"

#: Python interpreters of each side. Override with the environment variables.
PYTHONS = {
    "tfcontrast": os.environ.get("TFCONTRAST_PYTHON", sys.executable),
    "tfsim": os.environ.get(
        "TFCONTRAST_TFSIM_PYTHON", "/root/.cache/tfcontrast-peers/tfsim/bin/python"
    ),
    "lightly": os.environ.get(
        "TFCONTRAST_TORCH_PYTHON", "/root/.cache/tfcontrast-peers/torch/bin/python"
    ),
}
SCRIPTS = {
    "tfcontrast": PEERS / "tfcontrast_worker.py",
    "tfsim": PEERS / "tfsim_worker.py",
    "lightly": PEERS / "lightly_worker.py",
}
LABELS = {"tfcontrast": "tfcontrast", "tfsim": "TF Similarity", "lightly": "lightly"}


def _env(side: str) -> dict:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Every side gets the same thread budget (the workers also set it in-process).
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = "2"
    # OpenMP threads that spin while waiting collapse on a busy machine (CPU PyTorch:
    # NT-Xent at B = 512 went from ~30 ms to ~2 s at load 18); sleep instead, everywhere.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if side == "tfsim":
        env["TF_USE_LEGACY_KERAS"] = "1"
    else:
        env.pop("TF_USE_LEGACY_KERAS", None)
    if side == "tfcontrast":
        env["KERAS_BACKEND"] = "tensorflow"
        # Make the checkout importable even without the editable install.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(HERE.parent), env.get("PYTHONPATH", "")) if p
        )
    return env


def available(side: str) -> bool:
    return Path(PYTHONS[side]).exists()


def _read_reply(stream, what: str) -> dict:
    while True:
        line = stream.readline()
        if not line:
            raise RuntimeError(f"{what}: worker exited (see its stderr log)")
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])


class Worker:
    """A long-lived worker process of one library."""

    def __init__(self, side: str, log_dir: Path, library_path: str | None = None):
        """`library_path`: import the library from this checkout instead (a tfcontrast
        worker of another commit, e.g. a `git worktree`)."""
        self.side = side
        log_dir.mkdir(parents=True, exist_ok=True)
        name = side if library_path is None else f"{side}-{Path(library_path).name}"
        self.log_path = log_dir / f"{name}.stderr.log"
        self._log = open(self.log_path, "w")
        env = _env(side)
        if library_path is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(library_path), env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [PYTHONS[side], str(SCRIPTS[side])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=str(PEERS),
            env=env,
        )
        ready = _read_reply(self.proc.stdout, side)
        self.info = ready["info"]
        self.cases = set(ready["cases"])

    def _ask(self, request: dict) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return _read_reply(self.proc.stdout, self.side)

    def time(self, case: str, batch: int, dim: int, **timing) -> dict:
        return self._ask({"cmd": "time", "case": case, "batch": batch, "dim": dim, **timing})

    def graph(self, case: str, batch: int, dim: int) -> dict:
        """The case's traced step as an exported graph (`peers/_tf_graphs.py`)."""
        return self._ask({"cmd": "graph", "case": case, "batch": batch, "dim": dim})

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
        self._log.close()


def measure_memory(side: str, case: str, batch: int, dim: int, timeout: float = 900) -> dict:
    """Peak RSS increase of one case at `batch`, in a fresh process of `side`."""
    proc = subprocess.run(
        [PYTHONS[side], str(SCRIPTS[side]), "--memory", case, str(batch), str(dim)],
        capture_output=True,
        text=True,
        cwd=str(PEERS),
        env=_env(side),
        timeout=timeout,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    return {"ok": False, "error": f"exit {proc.returncode}: {proc.stderr[-1000:]}"}


def command_line() -> str:
    """The command that ran this benchmark, as typed (`python benchmarks/x.py --flags`)."""
    return " ".join(["python", *sys.argv])


def load_average() -> float:
    return os.getloadavg()[0]


def run_header(benchmark: str, infos: dict | None = None) -> dict:
    """The first keys of a benchmark's JSON: what it measures, the command that ran it,
    the machine and (for worker benchmarks, `infos`) each worker's library versions."""
    header = {"benchmark": benchmark, "command": command_line(), "machine": machine_info()}
    if infos is not None:
        header["libraries"] = infos
    return header


def machine_info() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def median_ms(samples: list[float]) -> float:
    return 1000.0 * statistics.median(samples)


def run_alternating(
    workers: dict,
    pairs: list[tuple[str, str]],
    batch: int,
    dim: int,
    rounds: int,
    timing: dict,
    log=print,
) -> dict:
    """Times `(side, case)` pairs on the same configuration, alternating the order.

    Round `r` runs the sides in order rotated by `r` (ours, theirs / theirs, ours ...).
    Returns `{side: {"samples": [...], "value": float, "error": str | None}}`.
    """
    out = {
        side: {"samples": [], "round_medians_ms": [], "value": None, "error": None}
        for side, _ in pairs
    }
    for r in range(rounds):
        order = pairs[r % len(pairs) :] + pairs[: r % len(pairs)]
        for side, case in order:
            if out[side]["error"]:
                continue
            reply = workers[side].time(case, batch, dim, **timing)
            if not reply.get("ok"):
                out[side]["error"] = reply.get("error", "failed")
                log(f"    {side}:{case} B={batch} D={dim} FAILED: {out[side]['error'][:200]}")
                continue
            out[side]["samples"].extend(reply["times"])
            out[side]["round_medians_ms"].append(median_ms(reply["times"]))
            out[side]["value"] = reply["value"]
    return out


def rounds_text(payload: dict) -> str:
    """How the medians were taken, e.g. "3 alternating rounds in each of 3 fresh worker
    processes" (older runs: "7 alternating rounds")."""
    settings = payload["settings"]
    text = f"{settings['rounds']} alternating rounds"
    if settings.get("processes", 1) > 1:
        text += f" in each of {settings['processes']} fresh worker processes"
    return text


def fmt_ms(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def fmt_ratio(value) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def fmt_mb(value) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1) + "\n")


def parse_table_args(parser, argv, markdown):
    """Adds `--out` and `--from-json` to a benchmark's `parser` and parses `argv`.
    Returns the arguments, or None after printing the table of `--from-json`'s file
    (`markdown(payload) -> str`)."""
    parser.add_argument("--out", type=Path, help="JSON output path")
    parser.add_argument("--from-json", type=Path, help="print the table of a JSON file and exit")
    args = parser.parse_args(argv)
    if args.from_json:
        print(markdown(json.loads(args.from_json.read_text())))
        return None
    return args


def select_rows(parser, rows: list[dict], only: str | None) -> list[dict]:
    """The rows whose name contains `only` (any case; every row when None), or a usage
    error that lists the names."""
    chosen = [r for r in rows if only is None or only.lower() in r["name"].lower()]
    if not chosen:
        parser.error(f"--only {only!r} matches no row; rows: {[r['name'] for r in rows]}")
    return chosen


def default_out(name: str, scratch: bool) -> Path:
    """Full runs write `benchmarks/results/NAME.json`; quick and partial runs
    (`scratch`) a scratch file, so that they never overwrite the published numbers."""
    if scratch:
        return Path(os.environ.get("TMPDIR", "/tmp")) / "tfcontrast-bench" / f"{name}.quick.json"
    return RESULTS / f"{name}.json"


def open_workers(sides, log_dir: Path, log=print) -> dict:
    """Starts one worker per available side (a missing peer venv is skipped)."""
    workers = {}
    for side in sides:
        if not available(side):
            log(f"  {LABELS[side]}: interpreter {PYTHONS[side]} not found, skipped")
            continue
        t0 = time.perf_counter()
        workers[side] = Worker(side, log_dir)
        log(
            f"  {LABELS[side]} worker ready in {time.perf_counter() - t0:.1f}s: "
            f"{workers[side].info}"
        )
    return workers


def time_rows(
    sides,
    rows: list[dict],
    configs: list[tuple[int, int]],
    rounds: int,
    timing: dict,
    processes: int = 1,
    log=print,
) -> tuple[list[dict], dict]:
    """Times every row (a dict with `name` and `cases: {side: case}`) at every
    `(batch, dim)` configuration and returns `(records, worker infos)`, one record per
    pair.

    The sides alternate inside every round. The whole run is repeated in `processes`
    fresh sets of worker processes and the samples pooled: a worker process has a speed
    of its own (at a millisecond or two per call, one process of a side ran 15-20%
    faster or slower than the next for its whole life), which alternating inside one
    pair of processes cannot average out. Each record keeps every process's median
    (`process_medians_ms`). Ratios are `peer_ms / tfcontrast_ms` (> 1: tfcontrast is
    faster).
    """
    raw: dict = {}  # (batch, dim, row name) -> {side: [per-process results]}
    meta: dict = {}
    infos: dict = {}
    for p in range(processes):
        if processes > 1:
            log(f"  worker processes {p + 1} of {processes}")
        workers = open_workers(sides, LOG_DIR, log=log)
        try:
            for batch, dim in configs:
                for row in rows:
                    pairs = [(s, case) for s, case in row["cases"].items() if s in workers]
                    key = (batch, dim, row["name"])
                    load_before = load_average()
                    t0 = time.perf_counter()
                    timed = run_alternating(workers, pairs, batch, dim, rounds, timing, log=log)
                    info = meta.setdefault(key, {"load": [], "wall_s": 0.0, "row": row})
                    info["load"].append(load_before)
                    info["wall_s"] += time.perf_counter() - t0
                    for side, result in timed.items():
                        raw.setdefault(key, {}).setdefault(side, []).append(result)
                    log(_describe(_record(key, meta[key], {s: [r] for s, r in timed.items()})))
        finally:
            infos = {side: w.info for side, w in workers.items()}
            for w in workers.values():
                w.close()
    records = [_record(key, meta[key], raw[key]) for key in raw]
    if processes > 1:
        for record in records:
            log("  pooled" + _describe(record)[1:])
    return records, infos


def _record(key, info, per_side: dict) -> dict:
    """A record from each side's per-process results (samples pooled)."""
    batch, dim, name = key
    record = {
        "name": name,
        "batch": batch,
        "dim": dim,
        "cases": dict(info["row"]["cases"]),
        "load_avg_1min": max(info["load"]),
        "wall_s": info["wall_s"],
        "sides": {},
    }
    for side, runs in per_side.items():
        samples = [t for run in runs for t in run["samples"]]
        record["sides"][side] = {
            "median_ms": median_ms(samples) if samples else None,
            "min_ms": 1000.0 * min(samples) if samples else None,
            "samples": len(samples),
            "round_medians_ms": [m for run in runs for m in run["round_medians_ms"]],
            "process_medians_ms": [
                median_ms(run["samples"]) if run["samples"] else None for run in runs
            ],
            "value": runs[-1]["value"],
            "error": next((run["error"] for run in runs if run["error"]), None),
        }
    ours = record["sides"].get("tfcontrast", {}).get("median_ms")
    record["ratios"] = {
        side: (s["median_ms"] / ours if ours and s["median_ms"] else None)
        for side, s in record["sides"].items()
        if side != "tfcontrast"
    }
    return record


def _describe(record: dict) -> str:
    summary = ", ".join(
        f"{LABELS[s]} {fmt_ms(i['median_ms'])} ms (value {i['value']!r:.10})"
        for s, i in record["sides"].items()
    )
    ratios = ", ".join(f"{LABELS[s]}/ours {fmt_ratio(v)}" for s, v in record["ratios"].items())
    return (
        f"  {record['name']:<34} B={record['batch']:<5} D={record['dim']:<5} {summary}; "
        f"{ratios}  [load {record['load_avg_1min']:.2f}]"
    )
