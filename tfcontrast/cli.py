"""The `tfcontrast` command line: `train`, `evaluate`, `export` and `search`.

`tfcontrast --help` lists the commands, `tfcontrast COMMAND --help` the flags of one
(`tfcontrast._cli_flags`), without starting TensorFlow: in this process `import tfcontrast`
leaves the submodules to `_main_with_errors`, which loads them after the flags.

Every run writes a run directory (`--run_dir`) holding the flags (`config.json`), the
training history (`history.csv`), metrics (`metrics.json`), plots, the trained model
(`model.keras`) and a backup of the last epoch: running the same `train` command again
after an interruption resumes from that backup (`tfcontrast._cli_run_dir`).

Errors in the input (a missing data path, an unknown algorithm, contradicting flags, an
unreadable run file) print one line on stderr and exit with status 2, without a
traceback; other failures are bugs to report and keep their traceback (status 1).
"""

from __future__ import annotations

import json
import logging as std_logging
import os
import sys
import time

from absl import app, flags

from tfcontrast import _cli_logs
from tfcontrast._cli_flags import (
    COMMANDS,
    FLAGS,
    RECIPE_FLAGS,
    UsageError,
    command_of,
    help_text,
    wants_help,
)
from tfcontrast._files import check_name, printable, remove_entry, remove_links


class ExportFailed(RuntimeError):
    """Training succeeded but an export failed its parity check; reported in one line."""


# -- data ------------------------------------------------------------------------------
# The report compares the model with raw pixels on samples whose float32 pixels fit in
# this many bytes (every image of a small collection; a sample of a large one), at most
# EVAL_TRAIN training and EVAL_TEST held-out images. Training streams every image.
EVAL_BYTES = 512 * 2**20
EVAL_TRAIN, EVAL_TEST = 20_000, 10_000


def _data_name(data: str) -> str:
    if data.startswith("tfds:"):
        return data[5:].replace("/", "_")
    name = os.path.splitext(os.path.basename(os.path.normpath(data)))[0]
    return name.replace("*", "").strip("-_.") or "data"


def open_data(data: str, image_size=None, channels=None):
    """The `tfcontrast.data.ImageSource` of `--data` (a UsageError names what is wrong)."""
    from tfcontrast.data.sources import open_source

    try:
        return open_source(data, image_size, channels)
    except (OSError, ValueError) as error:  # the messages name the path and what was expected
        raise UsageError(f"--data: {error}") from None


def load_data(data: str, image_size=None, max_examples=None, test_fraction=0.3, seed=0):
    """`(train, test)` `ImageSource`s of `--data`, streamed (never held in memory).

    Sources without a test split of their own are split `test_fraction` (stratified by
    label when there are labels); `max_examples` keeps the first examples only.
    """
    source = open_data(data, image_size)
    if max_examples is not None:
        test = source.test
        source = source.take(max_examples)
        source.test = test
    try:
        return source.split(test_fraction, seed)
    except ValueError as error:
        raise UsageError(f"--data: {error}") from None


def evaluation_samples(train, test, seed=0):
    """The report's samples of `train` and `test` (all of them when they fit, see
    EVAL_BYTES) as NumPy `(x_train, y_train, x_test, y_test)`, and a note when sampled."""
    import numpy as np

    per_image = 4 * int(np.prod(train.image_shape))
    room = max(2, EVAL_BYTES // per_image)
    n_train = min(len(train), EVAL_TRAIN, max(1, 2 * room // 3))
    n_test = min(len(test), EVAL_TEST, max(1, room - n_train))
    x_train, y_train = train.sample(n_train, seed).arrays()
    x_test, y_test = test.sample(n_test, seed).arrays()
    note = None
    if (n_train, n_test) != (len(train), len(test)):
        note = (
            f"report: measured on a sample of {n_train} training and {n_test} held-out images "
            f"(their pixels fit in {EVAL_BYTES // 2**20} MB); the index holds every training image"
        )
    return (x_train, y_train, x_test, y_test), note


def embed(model, source, batch_size=512):
    """The embeddings of every image of `source`, computed in batches."""
    return model.predict(source.batches(batch_size), verbose=0)


# -- model -----------------------------------------------------------------------------
# Algorithm options set by flags: the option's flag (the loss's miner is one of the
# options of the loss).
OPTION_FLAGS = {"temperature": "temperature", "loss": "loss", "loss_options": "miner"}


def flag_error(error) -> UsageError:
    """The UsageError of a `recipes.RecipeError`, naming the flag of its setting (recipe
    settings are flags of the same name; algorithm options map to theirs)."""
    option = error.setting.removeprefix("options.")
    return UsageError(f"--{OPTION_FLAGS.get(option, option)}: {error}")


def make_recipe(
    images, algorithm=None, temperature=None, loss=None, miner=None, num_examples=None, **settings
):
    """`(recipe, note)`: the recipe for `images` (a sample of the training images) with
    the flags that were set; `algorithm=None` takes the images' own
    (`recipes.for_images`). A UsageError names a bad flag."""
    from tfcontrast.models import recipes

    options = {"temperature": temperature, "loss": loss}
    options = {key: value for key, value in options.items() if value is not None}
    if miner is not None:
        options["loss_options"] = {"miner": miner}
    try:
        return recipes.for_images(
            images, algorithm, num_examples=num_examples, options=options, **settings
        )
    except recipes.RecipeError as error:
        raise flag_error(error) from None


# `--strategy` names and those of `tfcontrast.distribute.get_strategy`.
STRATEGIES = {"none": "default"}


# -- evaluation ------------------------------------------------------------------------
def embedding_report(train, train_y, test, test_y, seed=0):
    """1-NN with every training label, kNN (k = 20) and 1-NN with 10 labels per class
    (`N_labels_1nn_accuracy` with fewer, N, when a class has fewer training images)."""
    import numpy as np

    from tfcontrast.evaluation import few_shot_1nn_scores, knn_accuracy

    k = min(20, len(train))
    shots = int(min(10, np.unique(np.asarray(train_y), return_counts=True)[1].min()))
    return {
        "1nn_accuracy": float(knn_accuracy(train, train_y, test, test_y, k=1)),
        f"knn{k}_accuracy": float(knn_accuracy(train, train_y, test, test_y, k=k)),
        f"{shots}_labels_1nn_accuracy": float(
            few_shot_1nn_scores(
                train, train_y, test, test_y, shots_per_class=shots, seed=seed
            ).mean()
        ),
    }


def match_report(index, test, test_y, seed=0, target_precision=0.99):
    """Calibrates `index`'s match threshold on half of the held-out embeddings (for
    `target_precision`) and measures `index.match` on the other half: how often an
    accepted answer is right, and how many queries get one."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(test))
    calibration, check = order[: len(test) // 2], order[len(test) // 2 :]
    try:
        result = index.calibrate(test[calibration], test_y[calibration], target_precision)
    except ValueError as error:  # e.g. every nearest label right: nothing to reject
        return {"target_precision": target_precision, "not_calibrated": str(error)}
    matched = index.match(test[check])
    right = matched.known & (matched.labels == test_y[check])
    accepted = int(matched.known.sum())
    return {
        "target_precision": target_precision,
        "threshold": float(result.threshold),
        "held_out_precision": float(right.sum() / accepted) if accepted else float("nan"),
        "held_out_answered": accepted / len(check),
    }


def _match_line(report) -> str:
    if "not_calibrated" in report:  # its first sentence says why
        return f"match threshold: not calibrated ({report['not_calibrated'].split('. ')[0]}.)"
    return (
        f"match threshold: cosine >= {report['threshold']:.4f}, chosen on half of the "
        f"held-out images for {report['target_precision']:.0%} precision; on the other half "
        f"{report['held_out_precision']:.2%} of the answers are right and "
        f"{report['held_out_answered']:.1%} of the queries are answered (the rest: unknown)"
    )


# A trained embedding "learned little" when it removes less than this share of the raw
# pixels' errors with 10 labels per class (the default run on USPS removes 61%: 0.915 ->
# 0.967; the 94-epoch photo run of issue 35 removed 9%: 0.205 -> 0.278).
LITTLE_GAIN = 0.25
# The loss "barely moved" when it fell by less than this share of its first epoch's value,
# and "fell slowly" when its second half of epochs took off less than `PLATEAU` of what
# the whole run took off (contrastive losses do that long before more steps stop helping:
# on photos, 5 -> 15 minutes of SimCLR still gained 5 points of kNN).
BARELY = 0.05
PLATEAU = 0.1

ADVICE = (
    "train longer (--time_budget=MINUTES or --epochs), start from pretrained weights "
    "(--backbone=auto with --weights on photos of 64 px or more, or --backbone=RUN_DIR of an "
    "earlier run), or try another --algorithm"
)


def verdict(metrics, losses=None) -> str | None:
    """Plain words when the embedding is not clearly better than raw pixels: worse on a
    score, or removing less than `LITTLE_GAIN` of the pixels' errors with 10 labels per
    class; with the training `losses` (one per epoch), whether the loss was still falling,
    and what to try."""
    model, pixels = metrics.get("model"), metrics.get("raw_pixels")
    if not model or not pixels:
        return None
    worse = [k for k in model if model[k] < pixels[k]]
    key = next(k for k in model if k.endswith("_labels_1nn_accuracy"))
    shots = key.split("_")[0]
    gain = model[key] - pixels[key]
    removed = gain / max(1e-9, 1.0 - pixels[key])
    if worse:
        text = (
            "warning: the trained embedding is worse than raw pixels on "
            f"{', '.join(worse)}: for these images, searching or classifying with it is worse "
            "than with the pixels themselves."
        )
    elif removed < LITTLE_GAIN:
        text = (
            f"warning: the run learned little: with {shots} labels per class the embedding is "
            f"{100 * gain:.1f} points better than raw pixels ({model[key]:.3f} against "
            f"{pixels[key]:.3f}), {removed:.0%} of the pixels' errors removed."
        )
    else:
        return None
    losses = [float(v) for v in (losses or ()) if v == v]  # NaN rows dropped
    if len(losses) >= 4:
        first, last = losses[0], losses[-1]
        total = first - min(losses)
        late = losses[len(losses) // 2] - min(losses[len(losses) // 2 :])
        if total <= BARELY * abs(first):
            text += (
                f" The loss barely moved ({first:.3g} -> {last:.3g}): check the learning rate "
                "(--learning_rate) and that --augmentation suits the images."
            )
        elif late < PLATEAU * total:
            text += (
                f" The loss fell slowly in the second half of the run ({first:.3g} -> "
                f"{last:.3g}, {late / total:.0%} of its fall): more steps give diminishing "
                "returns; a pretrained backbone or a wider one (--width) may give more."
            )
        else:
            text += (
                f" The loss was still falling ({first:.3g} -> {last:.3g}): more steps should help."
            )
    return f"{text} To do better: {ADVICE}."


# -- commands --------------------------------------------------------------------------
def _remove_planted_links(run_dir):
    """A run directory is written by tfcontrast alone: links in it are removed, never
    written through, and said."""
    for path in remove_links(run_dir):
        print(f"warning: removed the symbolic link {printable(path)} (never written through)")


def _run_dir():
    if FLAGS.run_dir:
        return FLAGS.run_dir
    data = _data_name(FLAGS.data)
    return os.path.join("runs", f"{FLAGS.algorithm}-{data}" if FLAGS.algorithm else data)


def _check_export_flags():
    if FLAGS.quantization not in (None, "float16", "dynamic", "int8"):
        raise UsageError(
            f"--quantization: expected float16, dynamic or int8; received {FLAGS.quantization!r}."
        )


def _check_flags():
    if FLAGS.strategy == "tpu" and FLAGS.mixed_precision == "mixed_float16":
        raise UsageError(
            "--strategy=tpu with --mixed_precision=mixed_float16 contradict each "
            "other: TPUs use mixed_bfloat16."
        )
    _check_export_flags()
    if FLAGS.image_size is not None and FLAGS.image_size < 1:
        raise UsageError(f"--image_size: expected a positive size; received {FLAGS.image_size}.")
    for name in ("max_examples", "seed"):
        least = 1 if name == "max_examples" else 0
        if FLAGS[name].value is not None and FLAGS[name].value < least:
            raise UsageError(
                f"--{name}: expected an integer >= {least}; received {FLAGS[name].value}."
            )
    if not 0.0 < FLAGS.test_fraction < 1.0:
        raise UsageError(
            f"--test_fraction: expected a value in (0, 1); received {FLAGS.test_fraction}."
        )
    if FLAGS.weights not in (None, "imagenet") and not os.path.isfile(FLAGS.weights):
        raise UsageError(f"--weights: no such file: {FLAGS.weights!r}.")
    if FLAGS.time_budget is not None and not 0 < FLAGS.time_budget < float("inf"):
        raise UsageError(
            f"--time_budget: expected a positive number of minutes; received {FLAGS.time_budget}."
        )
    backbone = FLAGS.backbone or ""
    if ("/" in backbone or backbone.endswith(".keras")) and not os.path.exists(backbone):
        raise UsageError(
            f"--backbone: no such run directory or .keras file: {backbone!r}; expected a "
            "backbone name, a run directory of `tfcontrast train` or a saved .keras model."
        )


def _class_batches(recipe) -> str:
    if recipe.per_class is None:
        return ""
    return f" ({recipe.classes_per_batch} classes x {recipe.per_class} images)"


def _epoch_length(recipe) -> str:
    return "" if recipe.steps_per_epoch is None else f" of {recipe.steps_per_epoch} steps"


def _settings():
    keys = (
        "data",
        "algorithm",
        *RECIPE_FLAGS,
        "temperature",
        "loss",
        "miner",
        "image_size",
        "max_examples",
        "test_fraction",
        "mixed_precision",
        "seed",
    )
    return {key: FLAGS[key].value for key in keys}


def _read_config(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise UsageError(
            f"--run_dir: {path} cannot be read ({error}). Delete the run directory to "
            "start the run over."
        ) from None


def _check_run_dir(run_dir, settings):
    """A run directory belongs to one configuration: resuming with other flags is an error."""
    path = os.path.join(run_dir, "config.json")
    saved = None
    if os.path.exists(path):
        saved = _read_config(path)
        changed = {
            k: (saved.get(k), v) for k, v in settings.items() if k != "epochs" and saved.get(k) != v
        }
        if changed:
            shown = lambda value: "unset" if value is None else repr(value)  # noqa: E731
            detail = ", ".join(
                f"--{k}={shown(new)} (run has {shown(old)})" for k, (old, new) in changed.items()
            )
            raise UsageError(
                f"--run_dir={run_dir!r} holds a run with other settings: "
                f"{detail}. Use another --run_dir or the same flags to resume."
            )
    return saved


def train():
    import keras

    from tfcontrast._cli_run_dir import RunRecorder, write_json
    from tfcontrast.distribute import get_strategy
    from tfcontrast.evaluation import plots
    from tfcontrast.models import algorithms, recipes
    from tfcontrast.models.callbacks import CollapseMonitor, KNNMonitor
    from tfcontrast.retrieval import Index

    _check_flags()
    settings = _settings()
    run_dir = _run_dir()
    saved = _check_run_dir(run_dir, settings)
    # First: a multi-worker strategy must exist before TensorFlow runs anything.
    strategy = get_strategy(STRATEGIES.get(FLAGS.strategy, FLAGS.strategy))

    keras.utils.set_random_seed(FLAGS.seed)
    if FLAGS.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(FLAGS.mixed_precision)
    train_data, test_data = load_data(
        FLAGS.data, FLAGS.image_size, FLAGS.max_examples, FLAGS.test_fraction, FLAGS.seed
    )
    labelled = train_data.labelled and test_data.labelled
    (x_train, y_train, x_test, y_test), sample_note = evaluation_samples(
        train_data, test_data, FLAGS.seed
    )
    recipe, recipe_note = make_recipe(
        x_train,
        FLAGS.algorithm,
        FLAGS.temperature,
        FLAGS.loss,
        FLAGS.miner,
        num_examples=len(train_data),
        **{name: FLAGS[name].value for name in RECIPE_FLAGS},
    )
    if algorithms.get(recipe.algorithm).needs_labels and not train_data.labelled:
        raise UsageError(f"--algorithm={recipe.algorithm} needs labels; --data has none.")
    if train_data.labelled:
        try:
            recipe.check_labels(train_data.labels)
        except recipes.RecipeError as error:
            raise flag_error(error) from None
    print(
        f"data: {FLAGS.data}: {len(train_data)} training and {len(test_data)} held-out images "
        f"of shape {train_data.image_shape}{'' if labelled else ', no labels'}"
        + (f"; {len(train_data.skipped)} unreadable file(s) skipped" if train_data.skipped else "")
    )
    if sample_note:
        print(sample_note)
    print(recipe_note)
    if recipe.time_budget is not None:
        if saved and (saved.get("recipe") or {}).get("epochs"):  # resuming: the same epochs
            epochs = int(saved["recipe"]["epochs"])
            recipe = recipe.replace(epochs=epochs, time_budget=None)
            print(f"time budget: {FLAGS.time_budget:g} minutes, {epochs} epochs as first counted")
        else:
            recipe, budget_note = recipes.within_budget(recipe, train_data, seed=FLAGS.seed)
            print(budget_note)
    epochs = recipe.epochs_for(len(train_data))
    finished = _finished_metrics(run_dir, epochs)
    if finished is not None:  # a result: nothing of it is redone or overwritten
        print(
            f"{run_dir} holds a finished run of {finished['epochs']} epochs; nothing was "
            f"changed. Use `tfcontrast evaluate --run_dir={run_dir}` or `tfcontrast export "
            f"--run_dir={run_dir}`, another --run_dir for a new run, or --epochs larger than "
            f"{finished['epochs']} to train it further."
        )
        return finished
    with strategy.scope():
        model, note = recipes.build_model(
            recipe,
            train_data.image_shape,
            seed=FLAGS.seed,
            sample=x_train,
            labels=train_data.labels,
        )
        recipes.compile_model(model, recipe, len(train_data))
    print(note)
    print(
        f"recipe: {recipe.algorithm} {model.algorithm.get_config()}, {model.backbone.name} "
        f"backbone, {epochs} epochs{_epoch_length(recipe)} of batch {recipe.batch_size}"
        f"{_class_batches(recipe)}, "
        "learning rate "
        f"{recipe.learning_rate}, weight decay {recipe.weight_decay}, serving the "
        f"{recipe.serve} output"
    )
    every = max(1, epochs // 5)
    monitors = [CollapseMonitor(x_test, every=every)]
    if labelled:
        monitors.insert(0, KNNMonitor(x_train, y_train, x_test, y_test, k=20, every=every))
    os.makedirs(run_dir, exist_ok=True)
    _remove_planted_links(run_dir)
    start = time.time()
    recipes.fit(
        model,
        recipe,
        train_data,
        verbose=FLAGS.verbose,
        seed=FLAGS.seed,
        # The monitors first: their values are in the history row of the epoch. The
        # recorder writes config.json only once an epoch has ended: a run that fails
        # before leaves no settings behind to refuse the corrected command with.
        callbacks=[*monitors, RunRecorder(run_dir, {**settings, "recipe": recipe.to_dict()})],
    )
    seconds = time.time() - start
    partial = os.path.join(run_dir, "model.partial.keras")  # a kill leaves no half model
    _remove_planted_links(run_dir)  # written by tfcontrast alone: a link here was planted
    remove_entry(partial)
    model.save(partial)
    os.replace(partial, os.path.join(run_dir, "model.keras"))

    train_embeddings = embed(model, train_data)  # every training image: the search index
    sampled = model.predict(x_train, verbose=0) if sample_note else train_embeddings
    embedded_test = model.predict(x_test, verbose=0)
    history = os.path.join(run_dir, "history.csv")
    losses = _losses(history)
    metrics = {
        "train_seconds": round(seconds, 1),
        "epochs": epochs,
        "final_loss": losses[-1] if losses else None,
    }
    index = Index(metric="cosine").add(
        train_embeddings, labels=train_data.labels, payloads=train_data.payloads
    )
    if labelled:
        pixels = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
        metrics["model"] = embedding_report(sampled, y_train, embedded_test, y_test, FLAGS.seed)
        metrics["raw_pixels"] = embedding_report(pixels[0], y_train, pixels[1], y_test, FLAGS.seed)
        # The threshold `search` answers by.
        metrics["match"] = match_report(index, embedded_test, y_test, FLAGS.seed)
    index.save(os.path.join(run_dir, "index"))
    plots_dir = os.path.join(run_dir, "plots")
    os.makedirs(plots_dir, exist_ok=True)
    curves = _history_by_epoch(history, monitors)
    if curves:
        plots.training_curves(curves, os.path.join(plots_dir, "training_curves.png"))
    plots.projection_plot(
        embedded_test,
        y_test if labelled else None,
        os.path.join(plots_dir, "projection.png"),
    )
    if labelled:
        print(_metrics_table(metrics, recipe.algorithm))
        print(_match_line(metrics["match"]))
        warning = verdict(metrics, losses)
        if warning:
            print(warning)
    else:
        print(
            "no labels: the embedding's accuracy cannot be measured; give labelled held-out "
            "images (class subfolders, or y in the .npz) to compare it with raw pixels."
        )
    failed = None
    if FLAGS.export:
        from tfcontrast.export import ParityError

        try:
            metrics["export"] = _export(model, x_test, _export_name(FLAGS.data, recipe.algorithm))
        except ParityError as error:  # training succeeded: keep its results
            failed = error
            metrics["export"] = {"failed": str(error), "report": json.loads(error.report.to_json())}
    write_json(os.path.join(run_dir, "metrics.json"), metrics)
    print(f"run directory: {run_dir}")
    if failed is not None:
        raise ExportFailed(
            f"{failed} Training succeeded: the model and metrics.json are in {run_dir}; "
            "exports published before are unchanged."
        ) from failed
    return metrics


def _finished_metrics(run_dir, epochs):
    """The saved metrics of the run in `run_dir` when it finished at least `epochs` epochs
    (its model and metrics written), else None."""
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.isfile(path) or not os.path.isfile(os.path.join(run_dir, "model.keras")):
        return None
    try:
        with open(path) as f:
            metrics = json.load(f)
        done = int(metrics["epochs"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable: the run is finished again from its backup
    return metrics if done >= epochs else None


def _history_by_epoch(csv_path, monitors):
    """`{metric: {epoch: value}}` over every epoch of the run (resumed ones included)."""
    import csv

    curves = {}
    with open(csv_path) as f:
        for row in csv.DictReader(f):
            epoch = int(row.pop("epoch")) + 1
            for key, value in row.items():
                try:
                    curves.setdefault(key, {})[epoch] = float(value)
                except (TypeError, ValueError):
                    continue
    for monitor in monitors:
        for key, values in monitor.values.items():
            curves.setdefault(key, {}).update(values)
    return {key: values for key, values in curves.items() if values}


def _losses(csv_path):
    """The training loss of each epoch in the run's history."""
    import csv

    with open(csv_path) as f:
        return [float(row["loss"]) for row in csv.DictReader(f) if row.get("loss")]


def _metrics_table(metrics, algorithm):
    keys = list(metrics["model"])
    lines = [f"{'':14s}" + "".join(f"{k:>24s}" for k in keys)]
    for row in ("raw_pixels", "model"):
        name = "raw pixels" if row == "raw_pixels" else algorithm
        lines.append(f"{name:14s}" + "".join(f"{metrics[row][k]:>24.4f}" for k in keys))
    return "\n".join(lines)


def _export_name(data, algorithm) -> str:
    """`--name`, or DATA_ALGORITHM: a plain name inside `--export_dir` (the algorithm may
    come from a run's config.json, which is a file like any other)."""
    name = FLAGS.name or f"{_data_name(data)}_{algorithm}"
    try:
        return check_name(name, "--name" if FLAGS.name else "the export name")
    except ValueError as error:
        raise UsageError(f"--name: {error}") from None


def _export(model, sample, name):
    """SavedModel (TF Serving layout) and TFLite file, each checked against Keras."""
    from tfcontrast import export

    saved = export.saved_model(model, os.path.join(FLAGS.export_dir, name), sample_data=sample)
    tflite = export.tflite(
        model,
        # Each quantization its own file: an int8 export never replaces the float32 one.
        os.path.join(
            FLAGS.export_dir,
            f"{name}_{FLAGS.quantization}.tflite" if FLAGS.quantization else f"{name}.tflite",
        ),
        quantization=FLAGS.quantization,
        representative_data=sample,
        sample_data=sample,
        overwrite=True,
    )
    print(
        f"exported {saved.path}\n  {saved.summary()}\nexported {tflite.path}\n  {tflite.summary()}"
    )
    return {"saved_model": json.loads(saved.to_json()), "tflite": json.loads(tflite.to_json())}


def _load_run():
    """The trained model of `--run_dir` and its settings."""
    import keras

    from tfcontrast._cli_run_dir import check_keras_file
    from tfcontrast.models import backbones

    path = os.path.join(_run_dir(), "model.keras")
    config_path = os.path.join(_run_dir(), "config.json")
    if not os.path.exists(path) or not os.path.exists(config_path):
        raise UsageError(
            f"--run_dir: no trained model at {path!r} (and its config.json); run "
            "`tfcontrast train` first."
        )
    config = _read_config(config_path)
    check_keras_file(path)
    if backbones.is_preset(config.get("backbone") or ""):
        import keras_hub  # noqa: F401 - registers the layers the saved model holds
    return keras.saving.load_model(path), config


def _run_data(config):
    """The `(train, test)` sources the run of `config` trained and was measured on."""
    return load_data(
        config["data"],
        config["image_size"],
        config.get("max_examples"),
        config["test_fraction"],
        config["seed"],
    )


def evaluate():
    from tfcontrast.evaluation import evaluate_embeddings

    model, config = _load_run()
    train_data, test_data = _run_data(config)
    if not (train_data.labelled and test_data.labelled):
        raise UsageError(
            f"--run_dir: the run's data ({config['data']!r}) has no labels to evaluate with."
        )
    train, test = embed(model, train_data), embed(model, test_data)
    y_train, y_test = train_data.labels, test_data.labels
    metrics = evaluate_embeddings(
        test,
        y_test,
        train_embeddings=train,
        train_labels=y_train,
        knn_k=min(200, len(train)),
        seed=config["seed"],
    )
    metrics.update(embedding_report(train, y_train, test, y_test, config["seed"]))
    print(
        json.dumps(
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}, indent=2
        )
    )
    return metrics


def export_command():
    _check_export_flags()
    model, config = _load_run()
    _, test_data = _run_data(config)
    sample, _ = test_data.sample(EVAL_TEST, config["seed"]).arrays()
    algorithm = (config.get("recipe") or {}).get("algorithm") or config["algorithm"]
    return _export(model, sample, _export_name(config["data"], algorithm))


def _model_image_size(model):
    """`(height, width)` of the images `model` takes, or None when it takes any size."""
    height, width = model.backbone.input_shape[1:3]
    return None if height is None or width is None else (height, width)


def index_command():
    """Embeds `--data` (a folder, a manifest, TFRecords, ...) into the run's search index,
    with each image's file path as its payload; without `--data`, the run's training
    images (as `train` indexes them: never its held-out images). The run's match
    threshold is kept."""
    from tfcontrast.retrieval import Index

    if not FLAGS.run_dir:
        raise UsageError("--run_dir: `tfcontrast index` needs the run whose model embeds --data.")
    model, config = _load_run()
    channels = model.backbone.input_shape[-1]
    if FLAGS["data"].present:
        data = FLAGS.data
        source = open_data(data, _model_image_size(model) or config["image_size"], channels)
    else:
        data = f"the run's training split of {config['data']}"
        source, _ = _run_data(config)
    if source.image_shape[-1] != channels:
        raise UsageError(
            f"--data: its images have {source.image_shape[-1]} channel(s); the run's model "
            f"takes {channels}. Open it with the run's channels, e.g. grayscale files for a "
            "grayscale run."
        )
    saved = os.path.join(FLAGS.run_dir, "index")
    threshold = _saved_threshold(saved)
    embeddings = embed(model, source)
    index = Index(metric="cosine").add(embeddings, labels=source.labels, payloads=source.payloads)
    if threshold is not None:
        index.threshold = threshold
    partial = saved + ".partial"  # the previous index stays until the new one is complete
    _remove_planted_links(FLAGS.run_dir)
    remove_entry(partial)
    index.save(partial)
    remove_entry(saved)
    os.replace(partial, saved)
    print(f"index: {source.describe()} from {printable(data)} embedded into {saved}")
    return index


def _saved_threshold(path):
    from tfcontrast.retrieval import Index

    if not os.path.exists(path):
        return None
    try:
        return Index.load(path).threshold
    except ValueError:  # a broken index is replaced; its threshold is lost
        return None


def _load_index(path):
    from tfcontrast.retrieval import Index

    try:
        return Index.load(path)
    except (OSError, ValueError) as error:
        raise UsageError(
            f"--run_dir: the search index {path!r} cannot be read ({error}). Run "
            "`tfcontrast index` (or `train`) again to rebuild it."
        ) from None


def _queries(model, config):
    """`(names, images, labels or None)` of `--query`: held-out indices, or image files
    and folders."""
    text = FLAGS.query.strip()
    if text and all(part.strip().isdigit() for part in text.split(",")):
        _, test_data = _run_data(config)
        queries = [int(part) for part in text.split(",")]
        if max(queries) >= len(test_data):
            raise UsageError(
                f"--query: indices must be in [0, {len(test_data)}); received {FLAGS.query!r}."
            )
        x, y = test_data._view(queries).arrays()
        return [f"query {q}" for q in queries], x, y
    import numpy as np

    from tfcontrast.data.sources import from_files, open_source

    names, images = [], []
    size = _model_image_size(model) or config["image_size"]
    channels = model.backbone.input_shape[-1]  # grayscale files for an RGB model, or the reverse
    for part in filter(None, (p.strip() for p in text.split(","))):
        if not os.path.exists(part):
            raise UsageError(
                f"--query: no such file or folder: {part!r}; expected held-out indices "
                "(0,1,2) or image files and folders."
            )
        try:
            if os.path.isdir(part):
                source = open_source(part, size, channels)
            else:
                source = from_files([part], image_size=size, channels=channels, name=part)
        except ValueError as error:
            raise UsageError(f"--query: {error}") from None
        x, _ = source.arrays()
        names += [str(p) for p in source.payloads]
        images.append(x)
    if not images:
        raise UsageError("--query: expected held-out indices (0,1,2) or image files.")
    return names, np.concatenate(images), None


def search():
    model, config = _load_run()
    names, queries, labels = _queries(model, config)
    index = _load_index(os.path.join(_run_dir(), "index"))
    if FLAGS.k < 1:
        raise UsageError(f"--k: expected a number of neighbours >= 1; received {FLAGS.k}.")
    embedded = model.predict(queries, verbose=0)
    # Asking for more neighbours than the index holds returns all of them.
    result = index.search(embedded, k=min(FLAGS.k, len(index)))
    # A calibrated threshold answers with a label, or "unknown", for labelled indices.
    can_match = index.threshold is not None and index.labels is not None
    matched = index.match(embedded) if can_match else None
    for i, name in enumerate(names):
        line = printable(name)
        if labels is not None:
            line += f" (label {printable(labels[i])})"
        if matched is not None:
            answer = matched.labels[i] if matched.known[i] else "unknown"
            line += f": match {printable(answer)}"
        line += ";"
        for j in range(result.indices.shape[1]):
            if result.indices[i, j] < 0:
                continue
            item = result.payloads[i][j] if result.payloads is not None else result.indices[i, j]
            line += f"\n  {result.scores[i, j]:.4f}  {printable(item)}"
            if result.labels is not None:
                line += f"  (label {printable(result.labels[i, j])})"
        print(line)
    return result


def main(argv):
    """Runs the command of `argv` (flags parsed); errors in the input are UsageErrors."""
    from tfcontrast.models.recipes import RecipeError

    command = argv[1] if len(argv) > 1 else "train"
    if len(argv) > 2:
        raise UsageError(f"unexpected arguments {argv[2:]}; flags are written --name=value.")
    if command not in COMMANDS:
        raise UsageError(f"unknown command {command!r}; expected one of {list(COMMANDS)}.")
    run_command = {
        "train": train,
        "evaluate": evaluate,
        "export": export_command,
        "index": index_command,
        "search": search,
    }[command]
    try:
        return run_command()
    except RecipeError as error:  # a setting out of its range names its flag
        raise flag_error(error) from None


def _usage_exit(error):
    """A mistake in the input: one line on stderr, exit status 2."""
    print(f"tfcontrast: error: {error}", file=sys.stderr)
    sys.exit(2)


def _check_before_tensorflow(argv):
    """The checks of `train`'s flags that need no TensorFlow, and whether `--data` names a
    path that exists (for `train` and `index`)."""
    command = argv[1] if len(argv) > 1 else "train"
    if command == "train":
        _check_flags()
    if command in ("train", "index") and FLAGS["data"].present:
        from tfcontrast.data._kinds import missing_path  # no TensorFlow

        missing = missing_path(FLAGS.data)
        if missing:
            raise UsageError(f"--data: {missing}")


def _main_with_errors(argv):
    from absl import logging as absl_logging

    import tfcontrast

    try:  # mistakes in the flags alone, said before TensorFlow takes seconds to load
        _check_before_tensorflow(argv)
    except UsageError as error:
        _usage_exit(error)
    verbosity = FLAGS.verbosity if FLAGS["verbosity"].present else None
    # Before TensorFlow loads: its C++ log level, and its start-up lines left out. Then
    # the library, which the command line loads only now (see tfcontrast/__init__.py).
    _cli_logs.import_tensorflow(_cli_logs.configure(verbosity))
    tfcontrast._import_submodules()
    # absl's default INFO level would echo every TensorFlow and export log line; what a
    # run does is printed explicitly. `--verbosity=0` brings INFO back.
    if verbosity is None:
        absl_logging.set_verbosity(absl_logging.WARNING)
        for name in ("", "tensorflow", "tfcontrast"):
            std_logging.getLogger(name).setLevel(std_logging.WARNING)
    try:
        main(argv)
    except UsageError as error:
        _usage_exit(error)
    except ExportFailed as error:  # not a usage error, and nothing to debug in a traceback
        print(f"tfcontrast: export failed: {error}", file=sys.stderr)
        sys.exit(1)
    # Anything else is a bug: its traceback, exit status 1.


def _parse_flags(argv):
    """absl's flag parsing, with `--help` by command (exit 0, before TensorFlow starts)
    and flag errors in one line (exit 2)."""
    if wants_help(argv[1:]):
        try:
            print(help_text(command_of(argv[1:])))
        except UsageError as error:
            _usage_exit(error)
        sys.exit(0)
    try:
        return FLAGS(argv)
    except flags.Error as error:
        _usage_exit(error)


def run(argv=None):
    """Console-script entry point (`argv`: sys.argv when None)."""
    app.run(_main_with_errors, argv=argv, flags_parser=_parse_flags)
