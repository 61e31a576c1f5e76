"""Streaming from a folder of JPEGs (issue 20): peak host memory of `tfcontrast train`, and
input-pipeline throughput against what the training step consumes.

1. **Peak memory.** `python -m tfcontrast train --data=FOLDER --epochs=1 --export=false
   ...` runs as a subprocess on a folder of N generated 96x96 JPEGs (10 class
   subfolders), once per folder size (50,000 and 100,000 by default; the larger folder
   holds the smaller one's files, hard-linked, and as many new ones). Its peak resident
   set size is measured two ways: `ru_maxrss` of the command in a fresh wrapper process
   (`resource.getrusage(RUSAGE_CHILDREN)`: the largest process's true peak), and the sum
   of RSS over the command's process tree, polled every 0.2 s (`psutil`; children
   included). Every training image is streamed through `tfcontrast.data.ImageSource`:
   70% of the folder is the training split, whose decoded images (N x 96 x 96 x 3 uint8)
   exceed `CACHE_BYTES` (512 MiB) at both sizes, so keys are shuffled and decoded per
   batch. Target: peak under 3 GB at 50k, and less than 10% more at 100k.
2. **Throughput.** In a fresh process with the same flags (the recipe of
   `tfcontrast.cli.make_recipe`, the split of `tfcontrast.cli.load_data`): images/s of
   the input pipeline alone (`train.batches(batch_size, seed=0)`, iterated for
   `--pipeline_batches` after one warm-up batch, nothing else running in the process),
   then images/s of the training step (`batch_size` / the median step time, synchronised
   on the loss, after `--warmup` steps) of the recipe's model fed, as `recipes.fit`
   feeds it, by `train.batches(batch_size, seed=0, labels=...).repeat()`. Target: the
   pipeline gives at least 3x the images the step consumes. The mean ms/step of the
   CLI run's own epoch (Keras' progress line, tracing included) is reported beside it.

    # as in results/streaming.json: the committed code, a tiny model, epochs cut to 20 steps
    git archive HEAD | tar -x -C /tmp/tfcontrast_head && git rev-parse HEAD > /tmp/tfcontrast_head/REVISION
    python benchmarks/bench_streaming.py --library /tmp/tfcontrast_head --width=4 \
        --augmentation=none --max_steps=20           # ~40 min on a loaded 2-core machine
    python benchmarks/bench_streaming.py --quick         # 2,000 and 4,000 images, scratch JSON
    python benchmarks/bench_streaming.py --from-json benchmarks/results/streaming.json

The command line has no flag that shortens an epoch without cutting the data
(`--max_examples` keeps the first images only), and one epoch of 35,000 96x96 images
takes more than 30 minutes on 2 shared cores: `--max_steps K` runs the same command line
through `capped_cli`, which stops every `fit` epoch after K steps; the pipeline still
lists, shuffles and streams the whole folder, and everything after training (embedding
every training image, the index, the reports) runs in full.

The folders are generated under `--root` (default `/tmp/tfcontrast_streaming`, outside the
repository) with 2 processes, and reused when present. Images are smooth noise (bicubic
upsampling of 6x6 random pixels) with one filled shape whose kind depends on the class,
saved as JPEG quality 90 (about 2.6 kB each). Writes `benchmarks/results/streaming.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    _env,
    default_out,
    load_average,
    parse_table_args,
    run_header,
    write_json,
)

MARKER = "@@STREAM@@ "
IMAGE_SIZE = 96
CLASSES = 10
POLL_SECONDS = 0.2


# -- data -----------------------------------------------------------------------------
def make_image(index: int, size: int = IMAGE_SIZE):
    """Image `index` (deterministic): smooth noise and one filled shape of its class's kind."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(index)
    low = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    image = Image.fromarray(low).resize((size, size), Image.BICUBIC)
    draw = ImageDraw.Draw(image)
    colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
    side = int(rng.integers(16, size // 2))
    box = [x0, y0, x0 + side, y0 + side]
    kind = (index % CLASSES) % 3
    if kind == 0:
        draw.ellipse(box, fill=colour)
    elif kind == 1:
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) // 2, box[1])], colour)
    return image


def _image_path(folder: Path, index: int) -> Path:
    return folder / f"class_{index % CLASSES}" / f"{index:06d}.jpg"


def _write_images(job):
    folder, start, stop = job
    for index in range(start, stop):
        make_image(index).save(_image_path(Path(folder), index), "JPEG", quality=90)
    return stop - start


def make_folder(root: Path, n: int, smaller: Path | None = None, log=print) -> Path:
    """`root/jpeg_N`: images 0 .. n-1 in class subfolders; those of `smaller` (a folder made
    by this function) are hard-linked. Reused when complete (a `.complete` marker)."""
    folder = root / f"jpeg_{n}"
    if (folder / ".complete").exists():
        log(f"reusing {folder}")
        return folder
    for c in range(CLASSES):
        (folder / f"class_{c}").mkdir(parents=True, exist_ok=True)
    start = 0
    if smaller is not None:
        have = int(smaller.name.split("_")[1])
        for index in range(min(have, n)):
            target = _image_path(folder, index)
            if not target.exists():
                os.link(_image_path(smaller, index), target)
        start = min(have, n)
    t0 = time.perf_counter()
    chunk = 2_000
    jobs = [(str(folder), s, min(s + chunk, n)) for s in range(start, n, chunk)]
    with multiprocessing.Pool(2) as pool:
        written = sum(pool.imap_unordered(_write_images, jobs))
    (folder / ".complete").write_text(str(n))
    log(f"generated {folder}: {written} new images in {time.perf_counter() - t0:.0f} s")
    return folder


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.glob("class_*/*.jpg"))


# -- 1. peak memory of the command line -------------------------------------------------
def cli_command(args, data: Path, run_dir: Path) -> list[str]:
    """`python -m tfcontrast train ...`; with `--max_steps K`, the same command line run by
    `capped_cli` (this script), whose epoch stops after K steps."""
    start = [sys.executable, "-m", "tfcontrast"]
    if args.max_steps:
        start = [sys.executable, os.path.abspath(__file__), "--capped-cli", str(args.max_steps)]
    return [
        *start,
        "train",
        f"--data={data}",
        f"--run_dir={run_dir}",
        "--epochs=1",
        "--export=false",
        f"--algorithm={args.algorithm}",
        f"--backbone={args.backbone}",
        f"--width={args.width}",
        f"--augmentation={args.augmentation}",
        f"--batch_size={args.batch_size}",
        "--verbose=2",
    ]


def capped_cli(max_steps: int, argv: list[str]) -> None:
    """`tfcontrast.cli.run(argv)` with every `fit` epoch cut to `max_steps` steps: the
    command line has no flag for it, and an epoch of 35,000 images takes 25 minutes or more
    on a loaded 2-core machine. Everything else (listing, split, evaluation samples,
    embedding every training image, the index, the reports) runs as in the command line."""
    import keras

    fit = keras.Model.fit

    def capped_fit(self, *args, **kwargs):
        if kwargs.get("steps_per_epoch"):
            kwargs["steps_per_epoch"] = min(int(kwargs["steps_per_epoch"]), max_steps)
        return fit(self, *args, **kwargs)

    keras.Model.fit = capped_fit
    from tfcontrast.cli import run

    run(["tfcontrast", *argv])


def rss_wrapper(command: list[str]) -> None:
    """Runs `command` (stdout and stderr passed through) and prints its exit code and the
    peak RSS of its largest process (`ru_maxrss`, KiB on Linux)."""
    code = subprocess.call(command)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(MARKER + json.dumps({"returncode": code, "ru_maxrss_bytes": peak_kib * 1024}), flush=True)


def _tree_rss(proc) -> int:
    import psutil

    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:  # ended between the listing and the read
            continue
    return total


_EPOCH_LINE = re.compile(r"(\d+)/(\d+) - (\d+)s - ([\d.]+)(m?s)/step")


def library_env(args) -> dict:
    """The environment of the tfcontrast processes: `--library`'s tfcontrast first."""
    env = _env("tfcontrast")
    if args.library is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(args.library), env["PYTHONPATH"]])
    return env


def library_revision(args) -> str | None:
    """The commit of the library: `git describe` of a checkout, or the `REVISION` file of
    an exported copy (`git rev-parse HEAD > DIR/REVISION`)."""
    root = args.library or Path(__file__).resolve().parent.parent
    if (root / "REVISION").exists():
        return (root / "REVISION").read_text().strip()
    out = subprocess.run(
        ["git", "-C", str(root), "describe", "--always", "--dirty"], capture_output=True, text=True
    )
    return out.stdout.strip() or None


def measure_cli(args, data: Path, run_dir: Path, log=print) -> dict:
    """Runs the command line on `data` in a fresh wrapper process and polls the RSS of its
    process tree (the wrapper's few MiB of Python included)."""
    import psutil

    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    command = cli_command(args, data, run_dir)
    t0 = time.perf_counter()
    proc = psutil.Popen(
        [sys.executable, os.path.abspath(__file__), "--rss-wrapper", "--", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=library_env(args),
        cwd=str(args.library or Path.cwd()),  # `python -m` imports from its working folder
    )
    import threading

    lines = []

    def read():
        for line in proc.stdout:
            lines.append((time.perf_counter() - t0, line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    peak, peak_at, series = 0, 0.0, []
    load = []
    while proc.poll() is None:
        now = time.perf_counter() - t0
        rss = _tree_rss(proc)
        if rss > peak:
            peak, peak_at = rss, now
        if not series or now - series[-1][0] >= 2.0:
            series.append((round(now, 1), rss))
            load.append(load_average())
        time.sleep(POLL_SECONDS)
    reader.join()
    wall = time.perf_counter() - t0
    result = next(
        (json.loads(text[len(MARKER) :]) for _, text in lines if text.startswith(MARKER)), None
    )
    output = [(t, text) for t, text in lines if not text.startswith(MARKER)]
    if result is None or result["returncode"] != 0:
        tail = "\n".join(text for _, text in output[-40:])
        raise RuntimeError(f"tfcontrast train failed on {data}:\n{tail}")
    epoch = next((m for _, text in output for m in [_EPOCH_LINE.search(text)] if m), None)
    cli_step = None
    if epoch:
        seconds = float(epoch.group(4)) / (1000.0 if epoch.group(5) == "ms" else 1.0)
        cli_step = {
            "steps": int(epoch.group(2)),
            "epoch_seconds": int(epoch.group(3)),
            "mean_step_seconds": seconds,
            "images_per_second": args.batch_size / seconds,
        }
    metrics = json.loads((run_dir / "metrics.json").read_text())
    phase = next((text for t, text in reversed(output) if t <= peak_at), "")
    log(
        f"  {data.name}: peak RSS {peak / 2**30:.2f} GiB (tree, polled), "
        f"{result['ru_maxrss_bytes'] / 2**30:.2f} GiB (ru_maxrss); wall {wall:.0f} s"
    )
    return {
        "command": " ".join(command[1:]),
        "peak_rss_bytes_polled_tree": peak,
        "peak_rss_bytes_ru_maxrss": result["ru_maxrss_bytes"],
        "peak_at_seconds": round(peak_at, 1),
        "last_output_before_peak": phase,
        "wall_seconds": round(wall, 1),
        "train_seconds": metrics.get("train_seconds"),
        "cli_epoch": cli_step,
        "rss_series_2s": series,
        "load_average_1min": {"min": min(load), "max": max(load), "mean": statistics.mean(load)},
        "output": [f"{t:7.1f}s {text}" for t, text in output if "WARNING" not in text][-60:],
    }


# -- 2. pipeline vs training step -----------------------------------------------------
def throughput_worker(args) -> None:
    """Pipeline images/s, then training-step images/s, in this process (see the module)."""
    import keras

    from tfcontrast import cli
    from tfcontrast.models import recipes

    keras.utils.set_random_seed(0)
    recipe = cli.make_recipe(
        args.algorithm,
        backbone=args.backbone,
        width=args.width,
        augmentation=args.augmentation,
        batch_size=args.batch_size,
        epochs=1,
    )
    train, _ = cli.load_data(args.data, seed=0)
    bs = recipe.batch_size
    batches = iter(train.batches(bs, seed=0).repeat())
    next(batches)  # warm-up: tracing, first decode, the shuffle buffer filled with keys
    t0 = time.perf_counter()
    images = sum(int(next(batches).shape[0]) for _ in range(args.pipeline_batches))
    pipeline_seconds = time.perf_counter() - t0
    pipeline_load = load_average()
    del batches

    sample, _ = train.sample(512, seed=0).arrays()
    model, _ = recipes.build_model(recipe, train.image_shape, seed=0, sample=sample)
    recipes.compile_model(model, recipe, len(train))
    use_labels = model.algorithm.needs_labels or model.online_probe is not None
    feed = train.batches(bs, seed=0, labels=use_labels).repeat()
    marks = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # wait for the step
            marks.append(time.perf_counter())

    total = args.warmup + args.train_steps
    model.fit(feed, steps_per_epoch=total, epochs=1, verbose=0, callbacks=[Timer()])
    steps = [b - a for a, b in zip(marks[args.warmup - 1 :], marks[args.warmup :])]
    step = statistics.median(steps)
    print(
        MARKER
        + json.dumps(
            {
                "pipeline": {
                    "batches": args.pipeline_batches,
                    "images": images,
                    "seconds": pipeline_seconds,
                    "images_per_second": images / pipeline_seconds,
                    "load_average_1min": pipeline_load,
                },
                "step": {
                    "steps": len(steps),
                    "step_seconds": steps,
                    "median_step_seconds": step,
                    "steps_per_second": 1.0 / step,
                    "images_per_second": bs / step,
                    "load_average_1min": load_average(),
                },
                "recipe": recipe.to_dict(),
                "backbone": model.backbone.name,
                "training_images": len(train),
                "image_shape": list(train.image_shape),
                "decoded_training_bytes": len(train) * math.prod(train.image_shape),
                "cached": train._cached(),
            }
        ),
        flush=True,
    )


def measure_throughput(args, data: Path, log=print) -> dict:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        f"--data={data}",
        f"--algorithm={args.algorithm}",
        f"--backbone={args.backbone}",
        f"--width={args.width}",
        f"--augmentation={args.augmentation}",
        f"--batch_size={args.batch_size}",
        f"--pipeline_batches={args.pipeline_batches}",
        f"--train_steps={args.train_steps}",
        f"--warmup={args.warmup}",
    ]
    out = subprocess.run(command, capture_output=True, text=True, env=library_env(args))
    for line in out.stdout.splitlines():
        if line.startswith(MARKER):
            result = json.loads(line[len(MARKER) :])
            break
    else:
        raise RuntimeError(f"throughput worker failed on {data}:\n{out.stderr[-3000:]}")
    pipe, step = result["pipeline"]["images_per_second"], result["step"]["images_per_second"]
    result["ratio_pipeline_over_step"] = pipe / step
    log(
        f"  {data.name}: pipeline {pipe:.0f} images/s, training step {step:.0f} images/s, "
        f"ratio {pipe / step:.1f}x"
    )
    return result


# -- driver ---------------------------------------------------------------------------
def markdown(payload: dict) -> str:
    rows = [
        "| images | JPEG MB | peak RSS GiB (ru_maxrss) | peak RSS GiB (tree, polled) | "
        "pipeline images/s | step images/s | pipeline / step | CLI epoch images/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in payload["runs"]:
        cli, thr = run["cli"], run.get("throughput")
        epoch = cli.get("cli_epoch") or {}
        cells = [
            f"{run['images']:,}",
            f"{run['jpeg_bytes'] / 1e6:.0f}",
            f"{cli['peak_rss_bytes_ru_maxrss'] / 2**30:.2f}",
            f"{cli['peak_rss_bytes_polled_tree'] / 2**30:.2f}",
            f"{thr['pipeline']['images_per_second']:.0f}" if thr else "",
            f"{thr['step']['images_per_second']:.0f}" if thr else "",
            f"{thr['ratio_pipeline_over_step']:.1f}x" if thr else "",
            f"{epoch['images_per_second']:.0f}" if epoch else "",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    growth = payload.get("growth")
    if growth:
        rows.append("")
        rows.append(
            f"Peak RSS growth from {growth['from']:,} to {growth['to']:,} images: "
            f"{100 * growth['ru_maxrss']:+.1f}% (ru_maxrss), "
            f"{100 * growth['polled_tree']:+.1f}% (tree, polled)."
        )
    return "\n".join(rows)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--capped-cli"]:
        return capped_cli(int(argv[1]), argv[2:])
    if argv[:1] == ["--rss-wrapper"]:
        return rss_wrapper(argv[2:] if argv[1:2] == ["--"] else argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/tfcontrast_streaming"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 100_000])
    parser.add_argument("--algorithm", default="vicreg")
    parser.add_argument("--backbone", default="small_convnet")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--augmentation", default="auto")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument(
        "--max_steps",
        type=int,
        help="cut the command line's epoch to this many steps (see `capped_cli`)",
    )
    parser.add_argument("--pipeline_batches", type=int, default=40)
    parser.add_argument("--train_steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--library",
        type=Path,
        help="import tfcontrast from this folder (e.g. `git archive HEAD | tar -x -C DIR`) "
        "instead of this checkout",
    )
    parser.add_argument("--throughput_all", action="store_true", help="every size, not the first")
    parser.add_argument("--no_throughput", action="store_true", help="peak memory only")
    parser.add_argument("--quick", action="store_true", help="2,000 and 4,000 images")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parse_table_args(parser, argv, markdown)
    if args is None:
        return None
    if args.worker:
        return throughput_worker(args)
    if args.quick:
        args.sizes, args.pipeline_batches, args.train_steps = [2_000, 4_000], 6, 4
    out = args.out or default_out("streaming", scratch=args.quick)

    args.root.mkdir(parents=True, exist_ok=True)
    folders, previous = [], None
    for n in sorted(args.sizes):
        previous = make_folder(args.root, n, previous)
        folders.append(previous)
    payload = run_header("streaming", {})
    payload["library"] = str(args.library) if args.library else "this checkout"
    payload["library_revision"] = library_revision(args)
    payload["settings"] = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in ("worker", "data", "out", "from_json")
    }
    payload["load_average_start"] = os.getloadavg()
    payload["runs"] = []
    for i, folder in enumerate(folders):
        n = int(folder.name.split("_")[1])
        print(f"{n:,} images:", flush=True)
        run = {"images": n, "folder": str(folder), "jpeg_bytes": folder_bytes(folder)}
        run_name = f"run_{n}" + (f"_max_steps_{args.max_steps}" if args.max_steps else "")
        run["cli"] = measure_cli(args, folder, args.root / run_name)
        if (i == 0 or args.throughput_all) and not args.no_throughput:
            run["throughput"] = measure_throughput(args, folder)
        payload["runs"].append(run)
        write_json(out, payload)  # a partial file survives a later failure
    payload["load_average_end"] = os.getloadavg()
    if len(payload["runs"]) >= 2:
        first, last = payload["runs"][0], payload["runs"][-1]
        payload["growth"] = {
            "from": first["images"],
            "to": last["images"],
            **{
                key: last["cli"][f"peak_rss_bytes_{key}"] / first["cli"][f"peak_rss_bytes_{key}"]
                - 1.0
                for key in ("ru_maxrss", "polled_tree")
            },
        }
    write_json(out, payload)
    print(markdown(payload))
    print(f"wrote {out}")
    return payload


if __name__ == "__main__":
    main()
