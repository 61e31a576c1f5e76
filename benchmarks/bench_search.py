"""Exact search throughput: tfcontrast.retrieval.Index vs brute-force NumPy vs TF Similarity.

Measures queries per second for top-k cosine search of `--queries` queries against an
index of `--n` x `--dim` embeddings, and each method's recall@k against the exact answer
(computed once in float64). All sides read the same `.npy` files from one temporary
directory:

- `tfcontrast exact`: `Index(metric="cosine")` (chunked matrix products, running top-k),
- `numpy brute force`: one full `(Q, N)` matmul + `argpartition` + sort of the top k,
- `tfcontrast faiss`: `Index(backend="faiss")` (FAISS `IndexFlatIP`), when faiss-cpu is
  installed,
- `tfsim nmslib`: TensorFlow Similarity 0.17.1's `NMSLibSearch` (its default index,
  NMSLIB HNSW, approximate), run in its own process with the peer interpreter
  (`TF_USE_LEGACY_KERAS=1 /root/.cache/tfcontrast-peers/tfsim/bin/python`).

The data is a mixture of Gaussians on the unit sphere (clustered like real embeddings,
rather than isotropic noise). Search times are the median of `--repeats` runs after one
warm-up; index construction is timed separately.

Usage:

    python benchmarks/bench_search.py            # 100k x 128, 1000 queries, k=10
    python benchmarks/bench_search.py --quick    # 20k x 128, 200 queries

Writes `benchmarks/results/search.json` (`--out` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
TFSIM_PYTHON = "/root/.cache/tfcontrast-peers/tfsim/bin/python"

TFSIM_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np
    out = {"ok": False}
    try:
        import nmslib
        out["nmslib_version"] = getattr(nmslib, "__version__", "unknown")
    except Exception as err:  # record the fact, do not crash the benchmark
        out["error"] = f"nmslib does not import: {type(err).__name__}: {err}"
        print(json.dumps(out)); sys.exit(0)
    import tensorflow_similarity as tfsim
    from tensorflow_similarity.search import NMSLibSearch
    out["tfsim_version"] = tfsim.__version__
    d = sys.argv[1]; k = int(sys.argv[2]); repeats = int(sys.argv[3])
    x = np.load(os.path.join(d, "index.npy")); q = np.load(os.path.join(d, "queries.npy"))
    t0 = time.perf_counter()
    search = NMSLibSearch(distance="cosine", dim=x.shape[1])
    search.batch_add(x, list(range(x.shape[0])), verbose=0)
    out["build_s"] = time.perf_counter() - t0
    search.batch_lookup(q[:10], k=k)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        idxs, dists = search.batch_lookup(q, k=k)
        times.append(time.perf_counter() - t0)
    out["search_s"] = times
    out["method"] = search.method
    np.save(os.path.join(d, "tfsim_indices.npy"), np.asarray(idxs, dtype=np.int64))
    out["ok"] = True
    print(json.dumps(out))
    """
)


def make_data(n: int, num_queries: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(n // 100, 10), dim)).astype(np.float32)

    def sample(m):
        pts = centers[rng.integers(0, centers.shape[0], m)]
        pts = pts + 0.6 * rng.standard_normal((m, dim)).astype(np.float32)
        return pts / np.linalg.norm(pts, axis=1, keepdims=True)

    return sample(n).astype(np.float32), sample(num_queries).astype(np.float32)


def exact_truth(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    truth = np.empty((q.shape[0], k), np.int64)
    x64 = x.astype(np.float64)
    for s in range(0, q.shape[0], 256):
        sims = q[s : s + 256].astype(np.float64) @ x64.T
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
        truth[s : s + 256] = np.take_along_axis(part, order, axis=1)
    return truth


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    hits = [len(set(f[:k].tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.sum(hits) / truth.size)


def timed(fn, repeats: int):
    fn()  # warm-up
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times, result


def numpy_brute_force(x, q, k):
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    sims = qn @ xn.T
    part = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def summarize(name, times, num_queries, found, truth, extra=None):
    med = float(np.median(times))
    row = {
        "method": name,
        "search_s": [round(t, 4) for t in times],
        "median_search_s": round(med, 4),
        "queries_per_s": round(num_queries / med, 1),
        "recall_at_k": round(recall_at_k(found, truth), 4),
    }
    row.update(extra or {})
    print(
        f"{name:24s} {row['queries_per_s']:10.1f} q/s   recall@k {row['recall_at_k']:.4f}"
        + (f"   build {extra['build_s']:.2f}s" if extra and "build_s" in extra else "")
    )
    return row


def machine_info():
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
    }
    try:
        info["load_average_1_5_15"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20k index, 200 queries")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-tfsim", action="store_true", help="skip the TF Similarity side")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "search.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.queries = 20_000, 200

    from tfcontrast.retrieval import Index

    x, q = make_data(args.n, args.queries, args.dim)
    truth = exact_truth(x, q, args.k)
    print(f"index {x.shape}, queries {q.shape}, k={args.k}, repeats={args.repeats}")
    rows = []
    machine = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        np.save(os.path.join(tmp, "index.npy"), x)
        np.save(os.path.join(tmp, "queries.npy"), q)
        x = np.load(os.path.join(tmp, "index.npy"))
        q = np.load(os.path.join(tmp, "queries.npy"))

        t0 = time.perf_counter()
        index = Index(metric="cosine").add(x)
        index.search(q[:1], k=args.k)  # materialises the matrix
        build = time.perf_counter() - t0
        times, res = timed(lambda: index.search(q, k=args.k), args.repeats)
        rows.append(
            summarize(
                "tfcontrast exact",
                times,
                q.shape[0],
                res.indices,
                truth,
                {
                    "build_s": round(build, 3),
                    "query_batch_size": index.query_batch_size,
                    "index_batch_size": index.index_batch_size,
                },
            )
        )

        times, found = timed(lambda: numpy_brute_force(x, q, args.k), args.repeats)
        rows.append(summarize("numpy brute force", times, q.shape[0], found, truth))

        try:
            import faiss

            t0 = time.perf_counter()
            findex = Index(metric="cosine", backend="faiss").add(x)
            build = time.perf_counter() - t0
            times, res = timed(lambda: findex.search(q, k=args.k), args.repeats)
            rows.append(
                summarize(
                    "tfcontrast faiss (Flat)",
                    times,
                    q.shape[0],
                    res.indices,
                    truth,
                    {"build_s": round(build, 3), "faiss_version": faiss.__version__},
                )
            )
        except ImportError:
            rows.append({"method": "tfcontrast faiss (Flat)", "skipped": "faiss-cpu not installed"})

        tfsim = {"method": "tfsim 0.17.1 NMSLibSearch (HNSW)"}
        if args.no_tfsim:
            tfsim["skipped"] = "--no-tfsim"
        elif not os.path.exists(TFSIM_PYTHON):
            tfsim["skipped"] = f"peer interpreter {TFSIM_PYTHON} not found"
        else:
            env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
            proc = subprocess.run(
                [TFSIM_PYTHON, "-c", TFSIM_SCRIPT, tmp, str(args.k), str(args.repeats)],
                capture_output=True,
                text=True,
                env=env,
                timeout=1800,
            )
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            peer = json.loads(lines[-1]) if lines else {"ok": False}
            if not peer.get("ok"):
                tfsim["skipped"] = peer.get("error") or (
                    f"peer process failed (rc={proc.returncode}): {proc.stderr[-2000:]}"
                )
                print(f"tfsim: {tfsim['skipped']}")
            else:
                found = np.load(os.path.join(tmp, "tfsim_indices.npy"))
                extra = {
                    "build_s": round(peer["build_s"], 3),
                    "nmslib_version": peer["nmslib_version"],
                    "tfsim_version": peer["tfsim_version"],
                    "nmslib_method": peer["method"],
                    "nmslib_imports": True,
                }
                tfsim = summarize(
                    tfsim["method"], peer["search_s"], q.shape[0], found, truth, extra
                )
        rows.append(tfsim)

    ours = rows[0]["queries_per_s"]
    for row in rows:
        if "queries_per_s" in row:
            row["speed_vs_tfcontrast_exact"] = round(row["queries_per_s"] / ours, 3)
    result = {
        "benchmark": "exact top-k search throughput (cosine)",
        "command": "python benchmarks/bench_search.py" + (" --quick" if args.quick else ""),
        "config": {
            "n_index": args.n,
            "dim": args.dim,
            "n_queries": args.queries,
            "k": args.k,
            "repeats": args.repeats,
            "data": "mixture of Gaussians (n/100 centres, noise 0.6), L2-normalised, float32",
            "timing": "median wall time of one search call over all queries, after a warm-up",
        },
        "machine": machine,
        "results": rows,
        "notes": (
            "recall_at_k is |found top-k ∩ exact top-k| / k against a float64 brute force. "
            "TF Similarity's default NMSLIB index is HNSW (approximate) with default "
            "parameters; its build time includes HNSW construction."
        ),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
