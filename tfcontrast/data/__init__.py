"""Input pipelines: streamed image sources (folders, manifests, TFRecords, arrays, tfds),
multi-view and class-balanced datasets."""

# The pipelines are tf.data (TensorFlow only): import them on first use, so that
# `import tfcontrast` stays cheap and works on other Keras backends.
_EXPORTS = {
    "multiview": "tfcontrast.data.views",
    "class_balanced": "tfcontrast.data.balanced",
    "from_arrays": "tfcontrast.data.loaders",
    "from_npz": "tfcontrast.data.loaders",
    "from_tfds": "tfcontrast.data.loaders",
    "from_folder": "tfcontrast.data.loaders",
    "ImageSource": "tfcontrast.data.sources",
    "open_source": "tfcontrast.data.sources",
    "from_files": "tfcontrast.data.sources",
}

__all__: list[str] = []
__all__ += list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tfcontrast.data' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
