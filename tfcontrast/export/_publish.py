"""Atomic publishing: an export is built in a hidden staging folder beside its final
place and renamed into place only after its parity check passed.

A failure (or Ctrl-C) removes the staging folder and the directories the export created,
so a failed export leaves nothing behind and never touches what was published before.

A killed export (SIGKILL, power loss) cannot clean up; its staging folder is removed by
the next export into the same folder. A staging folder holds an owner file that its
export keeps locked (`flock`) while it runs, and the kernel releases the lock when the
process dies: a folder whose lock can be taken is stale. Only folders named like
tfcontrast's (`.tmp-export-XXXXXXXX`, `.tmp-tflite-XXXXXXXX`) are looked at; one without
an owner file (written by a tfcontrast without them) is stale once it has not changed
for `UNOWNED_STALE_AFTER_S`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: unowned-folder age rule only
    fcntl = None

logger = logging.getLogger("tfcontrast")

#: Name of the parity report inside a SavedModel version (`assets.extra/` is ignored by
#: TF Serving except for warm-up files).
REPORT_NAME = "tfcontrast_parity.json"
SAVED_MODEL_STAGING = ".tmp-export-"
TFLITE_STAGING = ".tmp-tflite-"
#: The owner file in a staging folder: pid, host and start time of its export, locked
#: while the export runs.
OWNER_NAME = "tfcontrast-staging.json"
#: How long a staging folder without an owner file must be unchanged to count as stale.
UNOWNED_STALE_AFTER_S = 24 * 3600
# tempfile.mkdtemp's names: the prefix and 8 characters of [a-z0-9_].
_STAGING_NAME = re.compile(r"\.tmp-(export|tflite)-[a-z0-9_]{8}")


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


def _claim(folder: Path):
    """Writes the owner file of a new staging folder and locks it for the export's life.

    The file is written and locked under another name, then renamed: no other process
    ever sees the owner file of a running export unlocked.
    """
    pending = folder / f"{OWNER_NAME}.new"
    handle = open(pending, "w")  # noqa: SIM115 - held open (locked) until the export ends
    try:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        handle.write(json.dumps(owner))
        handle.flush()
        os.replace(pending, folder / OWNER_NAME)
    except BaseException:
        handle.close()
        raise
    return handle


def _is_stale(folder: Path, now: float) -> bool:
    owner = folder / OWNER_NAME
    if fcntl is not None and owner.is_file():
        with open(owner, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # its export is running
                return False
            return True  # nobody holds the lock: its export died
    return now - folder.stat().st_mtime > UNOWNED_STALE_AFTER_S


def remove_stale(directory: Path) -> list[Path]:
    """Removes the staging folders in `directory` left by exports that were killed."""
    removed = []
    now = time.time()
    for entry in sorted(directory.iterdir()):
        if not _STAGING_NAME.fullmatch(entry.name) or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            stale = _is_stale(entry, now)
        except OSError:  # vanished, or not ours to read: leave it
            continue
        if stale:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
            logger.info("Removed %s, the staging folder of an export that did not finish.", entry)
    return removed


class Staging:
    """A hidden temporary folder in `directory` for one export (a context manager).

    Entering creates `directory` (and its missing parents), removes the staging folders
    of killed exports there (`remove_stale`) and creates this export's, with its locked
    owner file; leaving removes the staging folder, and on an exception also the
    directories that entering created, when they are empty.
    """

    def __init__(self, directory: str | os.PathLike, prefix: str):
        self.directory = Path(directory)
        self.prefix = prefix
        self.path: Path | None = None
        self._created: list[Path] = []
        self._owner = None

    def __enter__(self) -> Staging:
        self._created = _missing_dirs(self.directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            remove_stale(self.directory)
            self.path = Path(tempfile.mkdtemp(prefix=self.prefix, dir=self.directory))
            self._owner = _claim(self.path)
        except BaseException:
            self._release()
            _remove_if_empty(self._created)
            raise
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        self._release()
        if exc_type is not None:
            _remove_if_empty(self._created)
        return False

    def _release(self) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
        if self._owner is not None:
            self._owner.close()
            self._owner = None


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
