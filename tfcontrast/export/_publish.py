"""Atomic publishing: an export is built in a hidden staging folder beside its final
place and renamed into place only after its parity check passed.

A failure (or Ctrl-C) removes the staging folder and the directories the export created,
so a failed export leaves nothing behind and never touches what was published before.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

#: Name of the parity report inside a SavedModel version (`assets.extra/` is ignored by
#: TF Serving except for warm-up files).
REPORT_NAME = "tfcontrast_parity.json"
SAVED_MODEL_STAGING = ".tmp-export-"
TFLITE_STAGING = ".tmp-tflite-"


def saved_model_report_path(version_dir: Path) -> Path:
    return Path(version_dir) / "assets.extra" / REPORT_NAME


def tflite_report_path(path: Path) -> Path:
    return Path(path).with_suffix(".parity.json")


def _missing_dirs(directory: Path) -> list[Path]:
    """`directory` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    return missing


def _remove_if_empty(directories: list[Path]) -> None:
    """Removes directories an export created, deepest first, as long as they are empty."""
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:
            return


class Staging:
    """A hidden temporary folder in `directory` for one export (a context manager).

    Entering creates `directory` (and its missing parents) and the staging folder in it;
    leaving removes the staging folder, and on an exception also the directories that
    entering created, when they are empty.
    """

    def __init__(self, directory: str | os.PathLike, prefix: str):
        self.directory = Path(directory)
        self.prefix = prefix
        self.path: Path | None = None
        self._created: list[Path] = []

    def __enter__(self) -> Staging:
        self._created = _missing_dirs(self.directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=self.prefix, dir=self.directory))
        except BaseException:
            _remove_if_empty(self._created)
            raise
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        shutil.rmtree(self.path, ignore_errors=True)
        if exc_type is not None:
            _remove_if_empty(self._created)
        return False


def _next_version(base: Path) -> int:
    versions = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def publish_version(staged: Path, base: Path, version: int | None, report) -> Path:
    """Renames the staged SavedModel `staged` to `base/VERSION` with its report inside.

    `version=None` takes the next integer. An existing version is never replaced.
    """
    if version is None:
        version = _next_version(base)
    target = base / str(version)
    if target.exists():
        raise FileExistsError(
            f"saved_model: version {version} appeared at {str(target)!r} during the "
            "export; versions are never overwritten."
        )
    report.path = str(target)
    report.details["version"] = version
    report_path = saved_model_report_path(staged)
    report_path.parent.mkdir(exist_ok=True)
    report_path.write_text(report.to_json())
    os.rename(staged, target)
    return target


def publish_file(staged: Path, path: Path, report, staging: Staging) -> None:
    """Replaces `path` by the staged file `staged` and writes the report beside it.

    The staging folder is on the same filesystem as `path`, so each replacement is one
    atomic rename: a reader sees the old file or the new one, never a partial one.
    """
    report.path = str(path)
    staged_report = staging.path / "report.json"
    staged_report.write_text(report.to_json())
    os.replace(staged, path)
    os.replace(staged_report, tflite_report_path(path))
