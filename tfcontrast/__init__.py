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

from tfcontrast import (  # noqa: E402
    data,
    distances,
    distribute,
    evaluation,
    layers,
    losses,
    miners,
    models,
    optimizers,
    retrieval,
)

__all__ = [
    "__version__",
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
]


def __getattr__(name):
    # TensorFlow-only export code loads on first use: `import tfcontrast` stays cheap.
    if name == "export":
        import importlib

        return importlib.import_module("tfcontrast.export")
    raise AttributeError(f"module 'tfcontrast' has no attribute {name!r}")
