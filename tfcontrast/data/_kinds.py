"""What kind of source a `--data` string names, and whether a path it names is missing.

Plain Python, no TensorFlow: the command line asks it before TensorFlow loads, and
`tfcontrast.data.sources.open_source` dispatches on it, so both read `data` the same way.
"""

from __future__ import annotations

import os

TFRECORD_EXTENSIONS = (".tfrecord", ".tfrecords", ".tfrec")


def source_kind(data: str) -> str:
    """`"digits"`, `"tfds"`, `"tfrecord"` (TFRecord files, or a glob pattern matching
    several) or `"path"` (a folder, a manifest or an `.npz` file)."""
    if data == "digits":
        return "digits"
    if data.startswith("tfds:"):
        return "tfds"
    pattern = any(c in data for c in "*?[") and not os.path.exists(data)
    if data.lower().endswith(TFRECORD_EXTENSIONS) or pattern:
        return "tfrecord"
    return "path"


def missing_path(data: str) -> str | None:
    """The message when `data` names a file or folder that does not exist, else None."""
    if source_kind(data) == "path" and not os.path.exists(data):
        return f"no such file or folder: {data!r}."
    return None
