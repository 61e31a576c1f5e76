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


class ExportFailed(RuntimeError):
    """Training succeeded but an export failed its parity check; reported in one line."""


# -- data ------------------------------------------------------------------------------
def _data_name(data: str) -> str:
    if data.startswith("tfds:"):
        return data[5:].replace("/", "_")
    return os.path.splitext(os.path.basename(os.path.normpath(data)))[0] or "data"


def _materialize(dataset, limit):
    import numpy as np

    xs, ys = [], []
    for batch in dataset.take(limit).batch(1024).as_numpy_iterator():
        x, y = batch if isinstance(batch, tuple) else (batch, None)
        xs.append(x)
        if y is not None:
            ys.append(y)
    if not xs:
        raise UsageError("--data: the data source holds no images.")
    x = np.concatenate(xs).astype("float32")
    return x, (np.concatenate(ys).astype("int32") if ys else None)


def _npz_splits(path):
    """`(x, y, x_test, y_test)` of an .npz: arrays x (and y), or Keras' layout
    x_train, y_train, x_test, y_test (then the test arrays are not None)."""
    import numpy as np

    from tfcontrast._checks import integer_labels
    from tfcontrast.data.loaders import images_to_float

    with np.load(path, allow_pickle=False) as arrays:
        files = set(arrays.files)
        if {"x_train", "x_test"} <= files:
            keys = ("x_train", "y_train", "x_test", "y_test")
        elif "x" in files:
            keys = ("x", "y", None, None)
        else:
            raise UsageError(
                f"--data: {path!r} holds arrays {sorted(files)}; expected x (and y), or "
                "x_train, y_train, x_test, y_test."
            )
        out = []
        for x_key, y_key in (keys[:2], keys[2:]):
            if x_key is None:
                out += [None, None]
                continue
            x = images_to_float(arrays[x_key], "--data", x_key)
            y = arrays[y_key] if y_key in files else None
            out += [x, None if y is None else integer_labels(y, "--data", y_key, n=len(x))]
    return out


def _resize(x, image_size):
    import tensorflow as tf

    if image_size is None or tuple(x.shape[1:3]) == (image_size, image_size):
        return x
    resized = tf.image.resize(x, (image_size, image_size), antialias=True)
    return tf.clip_by_value(resized, 0.0, 1.0).numpy()


def load_data(data: str, image_size=None, max_examples=50000, test_fraction=0.3, seed=0):
    """Returns `(x_train, y_train, x_test, y_test)`: float32 images in [0, 1], int labels.

    The labels are None for unlabelled data. Sources without a test split of their own
    are split `test_fraction` (stratified by label when there are labels).
    """
    import numpy as np
    from sklearn.model_selection import train_test_split

    from tfcontrast import data as data_lib

    x_test = y_test = None
    try:
        if data == "digits":
            from sklearn.datasets import load_digits

            digits = load_digits()
            x = (digits.images / 16.0).astype("float32")[..., None]
            y = digits.target.astype("int32")
        elif data.startswith("tfds:"):
            x, y = _materialize(
                data_lib.from_tfds(data[5:], split="train", image_size=image_size), max_examples
            )
        elif not os.path.exists(data):
            raise UsageError(f"--data: no such file or folder: {data!r}.")
        elif os.path.isdir(data):
            x, y = _materialize(data_lib.from_folder(data, image_size=image_size), max_examples)
        elif data.endswith(".npz"):
            x, y, x_test, y_test = _npz_splits(data)
        else:
            raise UsageError(
                f"--data: expected 'digits', 'tfds:NAME', a folder or an .npz file; "
                f"received {data!r}."
            )
    except UsageError:
        raise
    except ValueError as error:  # the loaders' messages name the array and what was expected
        raise UsageError(f"--data: {error}") from None
    if x.shape[-1] not in (1, 3):
        raise UsageError(
            f"--data: images must have 1 (grayscale) or 3 (RGB) channels; received images of "
            f"shape {x.shape[1:]}."
        )
    x, y = x[:max_examples], (None if y is None else y[:max_examples])
    if x_test is None:
        if len(x) < 4:
            raise UsageError(f"--data: {len(x)} image(s) are too few to split for evaluation.")
        stratify = y if y is not None and np.min(np.bincount(y)) >= 2 else None
        indices = np.arange(len(x))
        train, test = train_test_split(
            indices, test_size=test_fraction, random_state=seed, stratify=stratify
        )
        x, x_test = x[train], x[test]
        y, y_test = (None, None) if y is None else (y[train], y[test])
    elif x_test.shape[1:] != x.shape[1:]:
        raise UsageError(
            f"--data: x_test images have shape {x_test.shape[1:]}, x_train {x.shape[1:]}; "
            "expected the same."
        )
    return _resize(x, image_size), y, _resize(x_test, image_size), y_test


# -- model -----------------------------------------------------------------------------
# Algorithm options set by flags: the option's flag (the loss's miner is one of the
# options of the loss).
OPTION_FLAGS = {"temperature": "temperature", "loss": "loss", "loss_options": "miner"}


def flag_error(error) -> UsageError:
    """The UsageError of a `recipes.RecipeError`, naming the flag of its setting (recipe
    settings are flags of the same name; algorithm options map to theirs)."""
    option = error.setting.removeprefix("options.")
    return UsageError(f"--{OPTION_FLAGS.get(option, option)}: {error}")


def make_recipe(algorithm, temperature=None, loss=None, miner=None, **settings):
    """The recipe of `algorithm` with the flags that were set (a UsageError names a bad one)."""
    from tfcontrast.models import recipes

    options = {"temperature": temperature, "loss": loss}
    options = {key: value for key, value in options.items() if value is not None}
    if miner is not None:
        options["loss_options"] = {"miner": miner}
    try:
        return recipes.Recipe.for_algorithm(algorithm, options=options, **settings)
    except recipes.RecipeError as error:
        raise flag_error(error) from None


# `--strategy` names and those of `tfcontrast.distribute.get_strategy`.
STRATEGIES = {"none": "default"}


# -- evaluation ------------------------------------------------------------------------
def embedding_report(train, train_y, test, test_y, seed=0):
    """1-NN with every training label, kNN (k = 20) and 1-NN with 10 labels per class."""
    from tfcontrast.evaluation import few_shot_1nn_scores, knn_accuracy

    k = min(20, len(train))
    return {
        "1nn_accuracy": float(knn_accuracy(train, train_y, test, test_y, k=1)),
        f"knn{k}_accuracy": float(knn_accuracy(train, train_y, test, test_y, k=k)),
        "10_labels_1nn_accuracy": float(
            few_shot_1nn_scores(train, train_y, test, test_y, seed=seed).mean()
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


def verdict(metrics) -> str | None:
    """A plain-words warning when the embedding is not clearly better than raw pixels."""
    model, pixels = metrics.get("model"), metrics.get("raw_pixels")
    if not model or not pixels:
        return None
    worse = [k for k in model if model[k] < pixels[k]]
    if worse:
        return (
            "warning: the trained embedding is worse than raw pixels on "
            f"{', '.join(worse)}: for these images, searching or classifying with it is worse "
            "than with the pixels themselves. Train longer (--epochs), check that "
            "--augmentation suits the images, or try another --algorithm."
        )
    gain = model["10_labels_1nn_accuracy"] - pixels["10_labels_1nn_accuracy"]
    if gain < 0.02:
        return (
            f"warning: with 10 labels per class the embedding is only {100 * gain:.1f} points "
            "better than raw pixels."
        )
    return None


# -- commands --------------------------------------------------------------------------
def _run_dir():
    if FLAGS.run_dir:
        return FLAGS.run_dir
    return os.path.join("runs", f"{FLAGS.algorithm}-{_data_name(FLAGS.data)}")


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
    if not 0.0 < FLAGS.test_fraction < 1.0:
        raise UsageError(
            f"--test_fraction: expected a value in (0, 1); received {FLAGS.test_fraction}."
        )
    if FLAGS.weights not in (None, "imagenet") and not os.path.isfile(FLAGS.weights):
        raise UsageError(f"--weights: no such file: {FLAGS.weights!r}.")
    return make_recipe(
        FLAGS.algorithm,
        FLAGS.temperature,
        FLAGS.loss,
        FLAGS.miner,
        **{name: FLAGS[name].value for name in RECIPE_FLAGS},
    )


def _class_batches(recipe) -> str:
    if recipe.per_class is None:
        return ""
    return f" ({recipe.classes_per_batch} classes x {recipe.per_class} images)"


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
    if os.path.exists(path):
        saved = _read_config(path)
        changed = {
            k: (saved.get(k), v) for k, v in settings.items() if k != "epochs" and saved.get(k) != v
        }
        if changed:
            detail = ", ".join(
                f"--{k}={new!r} (run has {old!r})" for k, (old, new) in changed.items()
            )
            raise UsageError(
                f"--run_dir={run_dir!r} holds a run with other settings: "
                f"{detail}. Use another --run_dir or the same flags to resume."
            )


def train():
    import keras

    from tfcontrast._cli_run_dir import RunRecorder, write_json
    from tfcontrast.distribute import get_strategy
    from tfcontrast.evaluation import plots
    from tfcontrast.models import algorithms, recipes
    from tfcontrast.models.callbacks import CollapseMonitor, KNNMonitor
    from tfcontrast.retrieval import Index

    recipe = _check_flags()
    settings = _settings()
    run_dir = _run_dir()
    _check_run_dir(run_dir, settings)
    # First: a multi-worker strategy must exist before TensorFlow runs anything.
    strategy = get_strategy(STRATEGIES.get(FLAGS.strategy, FLAGS.strategy))

    keras.utils.set_random_seed(FLAGS.seed)
    if FLAGS.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(FLAGS.mixed_precision)
    x_train, y_train, x_test, y_test = load_data(
        FLAGS.data, FLAGS.image_size, FLAGS.max_examples, FLAGS.test_fraction, FLAGS.seed
    )
    labelled = y_train is not None and y_test is not None
    if algorithms.get(recipe.algorithm).needs_labels and y_train is None:
        raise UsageError(f"--algorithm={recipe.algorithm} needs labels; --data has none.")
    if y_train is not None:
        try:
            recipe.check_labels(y_train)
        except recipes.RecipeError as error:
            raise flag_error(error) from None
    epochs = recipe.epochs_for(len(x_train))
    print(
        f"data: {FLAGS.data}: {len(x_train)} training and {len(x_test)} held-out images "
        f"of shape {x_train.shape[1:]}{'' if labelled else ', no labels'}"
    )
    with strategy.scope():
        model, note = recipes.build_model(
            recipe, x_train.shape[1:], seed=FLAGS.seed, sample=x_train, labels=y_train
        )
        recipes.compile_model(model, recipe, len(x_train))
    print(note)
    print(
        f"recipe: {recipe.algorithm} {model.algorithm.get_config()}, {model.backbone.name} "
        f"backbone, {epochs} epochs of batch {recipe.batch_size}{_class_batches(recipe)}, "
        "learning rate "
        f"{recipe.learning_rate}, weight decay {recipe.weight_decay}, serving the "
        f"{recipe.serve} output"
    )
    every = max(1, epochs // 5)
    monitors = [CollapseMonitor(x_test, every=every)]
    if labelled:
        monitors.insert(0, KNNMonitor(x_train, y_train, x_test, y_test, k=20, every=every))
    os.makedirs(run_dir, exist_ok=True)
    start = time.time()
    recipes.fit(
        model,
        recipe,
        x_train,
        y_train,
        verbose=FLAGS.verbose,
        seed=FLAGS.seed,
        # The monitors first: their values are in the history row of the epoch. The
        # recorder writes config.json only once an epoch has ended: a run that fails
        # before leaves no settings behind to refuse the corrected command with.
        callbacks=[*monitors, RunRecorder(run_dir, {**settings, "recipe": recipe.to_dict()})],
    )
    seconds = time.time() - start
    partial = os.path.join(run_dir, "model.partial.keras")  # a kill leaves no half model
    model.save(partial)
    os.replace(partial, os.path.join(run_dir, "model.keras"))

    embed = model.predict(x_train, verbose=0), model.predict(x_test, verbose=0)
    metrics = {
        "train_seconds": round(seconds, 1),
        "epochs": epochs,
        "final_loss": _last_logged_loss(os.path.join(run_dir, "history.csv")),
    }
    if labelled:
        pixels = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
        metrics["model"] = embedding_report(embed[0], y_train, embed[1], y_test, FLAGS.seed)
        metrics["raw_pixels"] = embedding_report(pixels[0], y_train, pixels[1], y_test, FLAGS.seed)
        # The search index of the training images, with the threshold `search` answers by.
        index = Index(metric="cosine").add(embed[0], labels=y_train)
        metrics["match"] = match_report(index, embed[1], y_test, FLAGS.seed)
        index.save(os.path.join(run_dir, "index"))
    plots_dir = os.path.join(run_dir, "plots")
    os.makedirs(plots_dir, exist_ok=True)
    curves = _history_by_epoch(os.path.join(run_dir, "history.csv"), monitors)
    if curves:
        plots.training_curves(curves, os.path.join(plots_dir, "training_curves.png"))
    plots.projection_plot(
        embed[1],
        y_test if labelled else None,
        os.path.join(plots_dir, "projection.png"),
    )
    if labelled:
        print(_metrics_table(metrics))
        print(_match_line(metrics["match"]))
        warning = verdict(metrics)
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
            metrics["export"] = _export(
                model, x_test, FLAGS.name or f"{_data_name(FLAGS.data)}_{FLAGS.algorithm}"
            )
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


def _last_logged_loss(csv_path):
    import csv

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]["loss"]) if rows else None


def _metrics_table(metrics):
    keys = list(metrics["model"])
    lines = [f"{'':14s}" + "".join(f"{k:>24s}" for k in keys)]
    for row in ("raw_pixels", "model"):
        name = "raw pixels" if row == "raw_pixels" else f"{FLAGS.algorithm}"
        lines.append(f"{name:14s}" + "".join(f"{metrics[row][k]:>24.4f}" for k in keys))
    return "\n".join(lines)


def _export(model, sample, name):
    """SavedModel (TF Serving layout) and TFLite file, each checked against Keras."""
    from tfcontrast import export

    saved = export.saved_model(model, os.path.join(FLAGS.export_dir, name), sample_data=sample)
    tflite = export.tflite(
        model,
        os.path.join(FLAGS.export_dir, f"{name}.tflite"),
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
    """The trained model of `--run_dir`, its settings and its data split."""
    import keras

    from tfcontrast._cli_run_dir import check_keras_file

    path = os.path.join(_run_dir(), "model.keras")
    config_path = os.path.join(_run_dir(), "config.json")
    if not os.path.exists(path) or not os.path.exists(config_path):
        raise UsageError(
            f"--run_dir: no trained model at {path!r} (and its config.json); run "
            "`tfcontrast train` first."
        )
    config = _read_config(config_path)
    check_keras_file(path)
    data = load_data(
        config["data"],
        config["image_size"],
        config["max_examples"],
        config["test_fraction"],
        config["seed"],
    )
    return keras.saving.load_model(path), config, data


def evaluate():
    from tfcontrast.evaluation import evaluate_embeddings

    model, config, (x_train, y_train, x_test, y_test) = _load_run()
    if y_train is None or y_test is None:
        raise UsageError(
            f"--run_dir: the run's data ({config['data']!r}) has no labels to evaluate with."
        )
    train = model.predict(x_train, verbose=0)
    test = model.predict(x_test, verbose=0)
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
    model, config, (_, _, x_test, _) = _load_run()
    return _export(
        model, x_test, FLAGS.name or f"{_data_name(config['data'])}_{config['algorithm']}"
    )


def search():
    from tfcontrast.retrieval import Index

    model, config, (x_train, y_train, x_test, y_test) = _load_run()
    try:
        queries = [int(q) for q in FLAGS.query.split(",") if q.strip()]
    except ValueError:
        raise UsageError(
            f"--query: expected comma-separated integers; received {FLAGS.query!r}."
        ) from None
    if not queries or min(queries) < 0 or max(queries) >= len(x_test):
        raise UsageError(
            f"--query: indices must be in [0, {len(x_test)}); received {FLAGS.query!r}."
        )
    saved = os.path.join(_run_dir(), "index")
    if os.path.exists(saved):  # written by `train`, with its calibrated threshold
        index = Index.load(saved)
    else:
        index = Index(metric="cosine")
        index.add(model.predict(x_train, verbose=0), labels=y_train)
    embedded = model.predict(x_test[queries], verbose=0)
    result = index.search(embedded, k=FLAGS.k)
    matched = index.match(embedded) if index.threshold is not None else None
    for i, (q, ids) in enumerate(zip(queries, result.indices)):
        line = f"query {q}"
        if y_test is not None:
            line += f" (label {y_test[q]})"
        if matched is not None:
            answer = matched.labels[i] if matched.known[i] else "unknown"
            line += f": match {answer}"
        line += f"; neighbours {list(map(int, ids))}"
        if y_train is not None:
            line += f" labels {list(map(int, result.labels[i]))}"
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
    run_command = {"train": train, "evaluate": evaluate, "export": export_command}.get(
        command, search
    )
    try:
        return run_command()
    except RecipeError as error:  # a setting out of its range names its flag
        raise flag_error(error) from None


def _main_with_errors(argv):
    from absl import logging as absl_logging

    import tfcontrast

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
        print(f"tfcontrast: error: {error}", file=sys.stderr)
        sys.exit(2)
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
            print(f"tfcontrast: error: {error}", file=sys.stderr)
            sys.exit(2)
        sys.exit(0)
    try:
        return FLAGS(argv)
    except flags.Error as error:
        print(f"tfcontrast: error: {error}", file=sys.stderr)
        sys.exit(2)


def run(argv=None):
    """Console-script entry point (`argv`: sys.argv when None)."""
    app.run(_main_with_errors, argv=argv, flags_parser=_parse_flags)
