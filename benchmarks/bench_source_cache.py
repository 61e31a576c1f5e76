"""`ImageSource`'s in-memory cache: does a cached collection live in memory once or twice?

When the decoded training images fit in `CACHE_BYTES` (512 MiB), `ImageSource.batches`
caches them after the first epoch and reshuffles them every epoch through a shuffle
buffer as large as the collection. The buffer could hold a second copy of every image;
tf.data's tensors share their buffers, so it should not. Measured, not assumed:

A folder of N generated 96x96 JPEGs (`bench_streaming.make_folder`; 15,000 by default:
396 MiB decoded, under `CACHE_BYTES`) is opened with `tfcontrast.data.open_source`, and in
a fresh process per mode `source.batches(256, seed=0)` is iterated for `--epochs`
epochs, with the cache (the default) and without it (`cache_bytes=0`: keys shuffled,
images decoded every epoch). Each process reports its resident set size (VmRSS) after
each epoch and its peak (VmHWM) as the increase over the RSS before the first batch. The
pipeline's own working memory (decoding threads' buffers, batches in flight) is the
streamed run's increase; what the cache adds is the difference. Target: the cache adds
under 1.5x the decoded bytes (one copy; two would add 2x).

Each mode runs twice: with glibc's default allocator settings, and with
`MALLOC_MMAP_THRESHOLD_=1000000` (every block over 1 MB mapped and returned to the system
when freed). By default glibc raises its mmap threshold after the first large free, so the
float32 batches (27 MiB at 256 x 96 x 96 x 3) come from its heaps and stay resident after
they are freed; a fast producer such as the cache leaves many of them behind. The fixed
threshold shows what the pipeline actually holds; the target is read there.

    python benchmarks/bench_source_cache.py                 # ~3 min, results/source_cache.json
    python benchmarks/bench_source_cache.py --images 2000   # quick look, scratch JSON
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import default_out, load_average, run_header, write_json  # noqa: E402
from bench_streaming import IMAGE_SIZE, make_folder  # noqa: E402

MARKER = "@@CACHE@@ "
MIB = 2**20


def _status(field: str) -> int:
    """A `/proc/self/status` field in bytes."""
    text = Path("/proc/self/status").read_text()
    return int(text.split(f"{field}:")[1].split()[0]) * 1024


def worker(folder: str, cached: bool, epochs: int, batch_size: int) -> None:
    import platform

    import tensorflow as tf

    from tfcontrast.data import open_source
    from tfcontrast.data.sources import CACHE_BYTES

    source = open_source(folder, cache_bytes=CACHE_BYTES if cached else 0)
    batches = source.batches(batch_size, seed=0)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) mark
    before = _status("VmRSS")
    after_epoch = []
    for _ in range(epochs):
        seen = sum(int(batch.shape[0]) for batch in batches)
        after_epoch.append((_status("VmRSS") - before) / MIB)
    result = {
        "tensorflow": tf.__version__,
        "libc": " ".join(platform.libc_ver()),
        "cached": source._cached(),
        "images": seen,
        "decoded_mib": seen * IMAGE_SIZE * IMAGE_SIZE * 3 / MIB,
        "rss_increase_mib_after_each_epoch": after_epoch,
        "peak_increase_mib": (_status("VmHWM") - before) / MIB,
    }
    print(MARKER + json.dumps(result), flush=True)


def measure(folder: Path, cached: bool, fixed_threshold: bool, args) -> dict:
    command = [sys.executable, __file__, "--worker", str(folder), "--epochs", str(args.epochs)]
    command += ["--batch_size", str(args.batch_size)] + (["--cached"] if cached else [])
    env = dict(os.environ)
    if fixed_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = "1000000"
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"the worker failed ({' '.join(command)}):\n{done.stderr[-4000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith(MARKER))
    return json.loads(line[len(MARKER) :])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=15_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--root", default="/tmp/tfcontrast_streaming")
    parser.add_argument("--out", default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cached", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.cached, args.epochs, args.batch_size)
    folder = make_folder(Path(args.root), args.images)
    rows = {}
    for allocator in ("default", "mmap_threshold_1mb"):
        for mode in ("cached", "streamed"):
            name = f"{mode}, {allocator}"
            rows[name] = row = measure(folder, mode == "cached", allocator != "default", args)
            row["peak_over_decoded"] = row["peak_increase_mib"] / row["decoded_mib"]
            epochs = ", ".join(f"{v:.0f}" for v in row["rss_increase_mib_after_each_epoch"])
            print(
                f"{name:30s} cached={row['cached']}: {row['images']} images, "
                f"{row['decoded_mib']:.0f} MiB decoded; RSS +{epochs} MiB after each epoch, "
                f"peak +{row['peak_increase_mib']:.0f} MiB ({row['peak_over_decoded']:.2f}x)"
            )
    added = {}
    for allocator in ("default", "mmap_threshold_1mb"):
        cached, streamed = rows[f"cached, {allocator}"], rows[f"streamed, {allocator}"]
        assert cached["cached"], "the decoded images exceed CACHE_BYTES: use fewer --images"
        peaks = cached["peak_increase_mib"] - streamed["peak_increase_mib"]
        added[allocator] = peaks / cached["decoded_mib"]
        print(f"the cache adds {added[allocator]:.2f}x the decoded bytes ({allocator})")
    verdict = "met" if added["mmap_threshold_1mb"] < 1.5 else "missed"
    print(f"target (< 1.5x with the fixed mmap threshold): {verdict}")
    payload = {
        **run_header("source_cache", {"tensorflow": cached["tensorflow"], "libc": cached["libc"]}),
        "load_average": load_average(),
        "rows": rows,
        "cache_adds_over_decoded": added,
        "target": verdict,
    }
    scratch = any(
        getattr(args, k) != parser.get_default(k) for k in ("images", "epochs", "batch_size")
    )
    out = Path(args.out) if args.out else default_out("source_cache", scratch)
    write_json(out, payload)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
