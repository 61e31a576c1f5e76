"""tfcontrast: contrastive and metric learning for Keras 3 and TensorFlow.

The public surface is organised in submodules:

- `tfcontrast.distances`: pairwise distances and similarities.
- `tfcontrast.miners`: pair and triplet mining.
- `tfcontrast.losses`: metric-learning and self-supervised losses.
- `tfcontrast.layers`: projection / prediction heads, augmentation layers, memory queues.
- `tfcontrast.models`: `ContrastiveModel`, its algorithms and backbones.
- `tfcontrast.optimizers`: LARS, warm-up cosine and EMA momentum schedules.
- `tfcontrast.data`: multi-view and class-balanced datasets (TensorFlow, loaded lazily).
- `tfcontrast.evaluation`: kNN / linear probes, retrieval and clustering metrics, plots.
- `tfcontrast.retrieval`: an embedding index for search.
- `tfcontrast.distribute`: global-batch gather and strategies for `tf.distribute`.
- `tfcontrast.export`: SavedModel (TF Serving) and TFLite export; import it explicitly.
"""

__version__ = "0.1.0"

import os as _os  # noqa: E402
import sys as _sys  # noqa: E402

_SUBMODULES = (
    "data",
    "distances",
    "distribute",
    "evaluation",
    "layers",
    "losses",
    "miners",
    "models",
    "optimizers",
    "retrieval",
)

__all__ = ["__version__", *_SUBMODULES]


def _import_submodules() -> None:
    """Imports the public submodules in this order (which registers every tfcontrast Keras
    class, and which the modules' imports of one another rely on)."""
    import importlib

    for name in _SUBMODULES:
        importlib.import_module(f"tfcontrast.{name}")


def _is_command_line() -> bool:
    """Whether this process is the `tfcontrast` command line (the console script, or
    `python -m tfcontrast`)."""
    main = getattr(_sys.modules.get("__main__"), "__file__", None) or ""
    if _os.path.splitext(_os.path.basename(main))[0] in ("tfcontrast", "tfcontrast-script"):
        return True
    argv = getattr(_sys, "orig_argv", ())
    return any(flag == "-m" and module == "tfcontrast" for flag, module in zip(argv, argv[1:]))


# `import tfcontrast` loads every submodule, and so Keras and TensorFlow; the command line
# loads them itself once it knows that the command needs them, so that `tfcontrast
# --help` answers without starting TensorFlow (tfcontrast.cli).
if not _is_command_line():
    _import_submodules()


def __getattr__(name):
    if name in _SUBMODULES:  # in the command line, before it loaded them
        _import_submodules()
        return _sys.modules[f"tfcontrast.{name}"]
    # TensorFlow-only export code loads on first use: `import tfcontrast` stays cheap.
    if name == "export":
        import importlib

        return importlib.import_module("tfcontrast.export")
    raise AttributeError(f"module 'tfcontrast' has no attribute {name!r}")
