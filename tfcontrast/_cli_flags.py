"""The flags of `tfcontrast` and its help, by command (absl only: no TensorFlow here).

`tfcontrast COMMAND --help` prints the flags that COMMAND reads, grouped by section, and
exits 0 without starting TensorFlow.
"""

from __future__ import annotations

import textwrap

from absl import flags
from absl import logging as absl_logging  # noqa: F401  (defines --verbosity)

FLAGS = flags.FLAGS


class UsageError(ValueError):
    """A mistake in the command line or its inputs; reported in one line, exit status 2."""


COMMANDS = {
    "train": (
        "Trains an embedding with the algorithm's recipe, compares it with raw pixels on "
        "held-out images and exports it (the default command). The same command again "
        "resumes an interrupted run from its last finished epoch."
    ),
    "evaluate": "Measures a trained run: kNN, linear probe, retrieval and clustering metrics.",
    "export": (
        "Exports a trained run: a SavedModel (TF Serving layout NAME/VERSION/) and a TFLite "
        "file, each checked against the Keras model."
    ),
    "index": (
        "Embeds a collection (--data: a folder, a manifest, TFRecords, ...) with a trained "
        "run's model into the run's search index, each image's file path as its payload."
    ),
    "search": (
        "Finds the nearest indexed images (the training images, or what `index` embedded) "
        "of image files or held-out images, and answers with the run's match threshold (a "
        "label, or unknown)."
    ),
}

# -- flags -----------------------------------------------------------------------------
flags.DEFINE_string(
    "data",
    "digits",
    "Data, streamed in batches (never held in memory): a folder with one subfolder per "
    "class, or of images alone (no labels: self-supervised methods); a manifest (.csv with "
    "a path and an optional label column, .json or .jsonl objects with path and label); "
    "TFRecord files (.tfrecord or a glob; the encoded image under image or image/encoded, "
    "an optional int label); an .npz file with arrays x (and y), or in Keras' layout "
    "x_train, y_train, x_test, y_test (its test split is then used for evaluation); "
    "'tfds:NAME'; or 'digits' (scikit-learn's, the default). index: the collection to embed "
    "(unset: the run's training images).",
)
# Unset: the method of the kind of images (tfcontrast.models.recipes.IMAGE_KINDS, each
# chosen on a validation split of its kind: VICReg for digits and other glyphs, SimCLR
# for photos; benchmarks/README.md, "How the recipes were chosen").
flags.DEFINE_string(
    "algorithm",
    None,
    "The method, by its name in tfcontrast.models.algorithms (an unknown name lists them); "
    "unset, the images' own: VICReg for digits and other glyphs, SimCLR for photos (said "
    "in the output). Self-supervised methods need no labels; supervised ones train on "
    "labelled data.",
)
# Training settings: unset (None) takes the algorithm's recipe default
# (tfcontrast.models.recipes), chosen by measurement on a validation split.
flags.DEFINE_string(
    "backbone",
    None,
    "auto (the default: a small-image ResNet-18, or a small ConvNet below 16 px; for colour "
    "photos of 64 px or more, ImageNet-pretrained EfficientNetV2B0 when its weights are in "
    "Keras' cache or given with --weights), the run directory of an earlier run or a saved "
    ".keras model (its backbone, pre-trained, fine-tunes here), "
    "cifar_resnet18, small_convnet, or any keras.applications model by name (ResNet50, "
    "EfficientNetV2B0, MobileNetV3Small, ConvNeXtTiny, ...; its input preprocessing is "
    "inside the model, so exports take raw pixels), or the directory of a KerasHub image "
    "backbone preset (with its weights and image converter; needs keras-hub).",
)
flags.DEFINE_integer(
    "width", None, "Base width of a small-image backbone (recipe default if unset)."
)
flags.DEFINE_string(
    "weights",
    None,
    "Weights of a keras.applications backbone: imagenet (downloaded by Keras) or the path "
    "of a weights file (with --backbone=auto, of EfficientNetV2B0); unset trains from "
    "scratch, or from Keras' cached ImageNet weights for photos with --backbone=auto.",
)
flags.DEFINE_bool(
    "freeze_backbone", None, "Train the heads only, on a frozen (pretrained) backbone."
)
flags.DEFINE_integer(
    "unfreeze_after",
    None,
    "With --freeze_backbone: unfreeze the backbone after this many epochs (a fresh "
    "optimiser schedule for the rest of the run).",
)
flags.DEFINE_integer(
    "lora_rank",
    None,
    "With --weights: fine-tune the pretrained backbone through LoRA adapters of this rank "
    "(every other backbone weight frozen).",
)
flags.DEFINE_integer(
    "local_views",
    None,
    "Multi-crop: this many small local crops besides the two global views (DINO, SwAV, "
    "SimCLR, SupCon, metric).",
)
flags.DEFINE_integer(
    "local_size",
    None,
    "With --local_views: side of the local crops in pixels (default 96/224 of the image's "
    "as DINO, never below 16 px or the image; on 16 px digits smaller crops did worse than "
    "two views).",
)
flags.DEFINE_list(
    "local_scale",
    None,
    "With --local_views: MIN,MAX fraction of the view's area a local crop covers "
    "(default 0.05,0.4 as DINO; 0.3,0.6 on images of at most 64 px).",
)
flags.DEFINE_bool(
    "online_probe",
    None,
    "Train a linear classifier on the stopped backbone features from the labels while "
    "training; its accuracy is logged every epoch.",
)
flags.DEFINE_string(
    "augmentation",
    "auto",
    "auto (chosen from the images' channels and size, and said in the output), glyphs, "
    "small_natural, natural or none.",
)
flags.DEFINE_integer("epochs", None, "Training epochs (recipe default if unset).")
flags.DEFINE_integer(
    "steps_per_epoch",
    None,
    "Batches in an epoch (default: one pass over the data); on a large collection, for "
    "progress, monitors and backups every this many steps. Unset --epochs then gives the "
    "recipe's ~3,000 steps.",
)
flags.DEFINE_float(
    "time_budget",
    None,
    "Minutes of training: a few steps are timed on this machine and the epochs that fit "
    "are trained (instead of the recipe's steps; excludes --epochs).",
)
flags.DEFINE_integer("batch_size", None, "Global batch size (recipe default if unset).")
flags.DEFINE_float(
    "learning_rate", None, "Peak learning rate (AdamW, 5% warm-up then cosine decay)."
)
flags.DEFINE_float("weight_decay", None, "AdamW weight decay (recipe default if unset).")
flags.DEFINE_float("temperature", None, "Loss temperature (recipe default if unset).")
flags.DEFINE_string(
    "loss",
    None,
    "The metric loss of a supervised method that takes one (labels needed): "
    "multi_similarity (default), triplet, circle, contrastive, lifted_structure, npair, or "
    "a proxy loss: arcface, cosface, subcenter_arcface, proxy_anchor, proxy_nca, "
    "normalized_softmax; on two augmented views of each image.",
)
flags.DEFINE_string(
    "miner", None, "With --loss: the pair or triplet miner, e.g. batch_hard, semi_hard, all."
)
flags.DEFINE_integer(
    "classes_per_batch",
    None,
    "With --per_class (supervised algorithms): P x K batches of this many classes (P).",
)
flags.DEFINE_integer(
    "per_class", None, "With --classes_per_batch: images of each class in a batch (K)."
)
flags.DEFINE_integer("projection_dim", None, "Output width of the projection head.")
flags.DEFINE_integer("hidden_dim", None, "Hidden width of the projection and prediction heads.")
flags.DEFINE_string("serve", None, "Served embedding: backbone or projector.")
flags.DEFINE_integer("image_size", None, "Resize every image to this size.")
flags.DEFINE_integer(
    "max_examples", None, "Use only the first this many examples of the data (default: all)."
)
flags.DEFINE_float(
    "test_fraction", 0.3, "Held-out fraction for evaluation (data without a test split)."
)
flags.DEFINE_string(
    "run_dir", None, "Run directory (default runs/DATA, or runs/ALGORITHM-DATA with --algorithm)."
)
flags.DEFINE_enum(
    "strategy",
    "auto",
    ["auto", "none", "mirrored", "multi_worker", "tpu"],
    "tf.distribute strategy (tfcontrast.distribute.get_strategy): auto uses "
    "MultiWorkerMirroredStrategy when TF_CONFIG names several tasks, MirroredStrategy with "
    "several GPUs, else one device.",
)
flags.DEFINE_enum(
    "mixed_precision",
    "none",
    ["none", "mixed_float16", "mixed_bfloat16"],
    "Keras mixed-precision policy.",
)
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_bool("export", True, "train: export a SavedModel and a TFLite file at the end.")
flags.DEFINE_string("export_dir", "saved_models", "Where exports land (NAME/VERSION/).")
flags.DEFINE_string("name", None, "Export name (default DATA_ALGORITHM).")
flags.DEFINE_string("quantization", None, "TFLite quantization: float16, dynamic or int8.")
flags.DEFINE_string(
    "query",
    "0,1,2",
    "search: image files or folders, or indices of held-out images (comma-separated).",
)
flags.DEFINE_integer("k", 5, "search: neighbours to return.")
flags.DEFINE_integer("verbose", 2, "Keras fit verbosity (0, 1 progress bar, 2 one line).")

# -- help ------------------------------------------------------------------------------
_RUN_COMMANDS = ("evaluate", "export", "index", "search")

# Flags that set a recipe field of the same name (unset: the algorithm's recipe default):
# the model's, and the schedule's.
MODEL_FLAGS = (
    "backbone",
    "width",
    "weights",
    "freeze_backbone",
    "unfreeze_after",
    "lora_rank",
    "augmentation",
    "local_views",
    "local_size",
    "local_scale",
    "projection_dim",
    "hidden_dim",
    "serve",
)
SCHEDULE_FLAGS = (
    "epochs",
    "time_budget",
    "steps_per_epoch",
    "batch_size",
    "classes_per_batch",
    "per_class",
    "learning_rate",
    "weight_decay",
    "online_probe",
)
RECIPE_FLAGS = MODEL_FLAGS + SCHEDULE_FLAGS

# (title, commands, flags): the sections of `--help`, in order (the overview shows each
# flag once, in its first section).
SECTIONS = (
    ("Run directory", tuple(COMMANDS), ("run_dir",)),
    ("Data", ("train",), ("data", "image_size", "max_examples", "test_fraction")),
    ("Collection to index", ("index",), ("data",)),
    (
        "Method (unset: the algorithm's recipe, tfcontrast.models.recipes)",
        ("train",),
        ("algorithm", "temperature", "loss", "miner", *MODEL_FLAGS),
    ),
    (
        "Training (unset: the recipe)",
        ("train",),
        (*SCHEDULE_FLAGS, "seed", "strategy", "mixed_precision"),
    ),
    (
        "Which run, without --run_dir (runs/DATA, or runs/ALGORITHM-DATA with --algorithm)",
        ("evaluate", "export", "search"),
        ("algorithm", "data"),
    ),
    ("Export", ("train", "export"), ("export", "export_dir", "name", "quantization")),
    ("Search", ("search",), ("query", "k")),
    ("Output", tuple(COMMANDS), ("verbose", "verbosity")),
)

# Flags that only some commands of their section read.
_ONLY = {"export": ("train",), "verbose": ("train",)}

# absl's own help for --verbosity does not say what it does here.
_HELP = {
    "verbosity": (
        "Log level (absl): unset, TensorFlow's start-up and C++ log lines are silenced "
        "(TF_CPP_MIN_LOG_LEVEL=3, unless set); -2 shows errors, -1 warnings too, 0 info."
    ),
}

_HELP_ARGS = ("-h", "-?", "--help", "-help", "--helpshort", "-helpshort")


def wants_help(args) -> bool:
    """Whether the arguments (without the program name) ask for help."""
    for arg in args:
        if arg == "--":
            return False
        if arg in _HELP_ARGS:
            return True
    return False


def command_of(args) -> str | None:
    """The command among the arguments (the first positional one), or None."""
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--":
            return None
        if arg.startswith("-") and len(arg) > 1:
            name = arg.lstrip("-")
            # `--name value`: the value of a non-boolean flag is not a command.
            if "=" not in name and name in FLAGS and not FLAGS[name].boolean:
                skip = True
            continue
        return arg
    return None


def _flag_lines(name) -> list[str]:
    flag = FLAGS[name]
    text = _HELP.get(name, flag.help)
    if flag.boolean:
        usage = f"--[no]{name}"
    elif isinstance(flag.parser, flags.EnumParser):
        usage = f"--{name}={{{','.join(flag.parser.enum_values)}}}"
        text = text.split(">: ", 1)[-1]  # absl prefixes an enum's help with its values
    else:
        usage = f"--{name}={flag.flag_type().upper()}"
    if flag.default is not None and name not in _HELP:
        default = str(flag.default).lower() if flag.boolean else repr(flag.default)
        text += f" (default: {default})"
    body = textwrap.fill(text, width=88, initial_indent=" " * 8, subsequent_indent=" " * 8)
    return [f"  {usage}", body]


def _sections(command) -> list[str]:
    """The sections of `command`; with None, every section once, marked with its commands."""
    lines, shown = [], set()
    for title, commands, names in SECTIONS:
        if command is not None and command not in commands:
            continue
        names = [n for n in names if command is None or command in _ONLY.get(n, commands)]
        names = [n for n in names if n not in shown]
        if not names:
            continue
        shown.update(names)
        lines += ["", title + (":" if command is not None else f" [{', '.join(commands)}]:")]
        for name in names:
            lines += _flag_lines(name)
    return lines


def help_text(command: str | None = None) -> str:
    """The help of `command` (its flags by section), or of the command line as a whole."""
    if command is not None and command not in COMMANDS:
        raise UsageError(f"unknown command {command!r}; expected one of {list(COMMANDS)}.")
    wrap = lambda text: textwrap.fill(text, width=88)  # noqa: E731
    if command is None:
        lines = [
            "usage: tfcontrast [COMMAND] [--FLAG=VALUE ...]",
            "",
            wrap(
                "Contrastive and metric learning on images. Each run keeps its flags, "
                "history, metrics, plots, model and a backup of its last epoch in a run "
                "directory."
            ),
            "",
            "commands:",
        ]
        for name, about in COMMANDS.items():
            lines.append(
                textwrap.fill(
                    about, width=88, initial_indent=f"  {name:10s}", subsequent_indent=" " * 12
                )
            )
        lines += [
            "",
            "`tfcontrast COMMAND --help` lists the flags of one command; all of them follow.",
        ]
    else:
        lines = [f"usage: tfcontrast {command} [--FLAG=VALUE ...]", "", wrap(COMMANDS[command])]
    lines += _sections(command)
    lines += [
        "",
        wrap(
            "Mistakes in flags or data print one line and exit with status 2; other "
            "failures exit with status 1. `--helpfull` lists absl's own flags too."
        ),
    ]
    return "\n".join(lines)
