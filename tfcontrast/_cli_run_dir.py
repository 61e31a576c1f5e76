"""What `tfcontrast train` writes in its run directory each epoch, in an order that a kill
at any moment cannot corrupt.

At the end of each epoch, in this order: the epoch's row of `history.csv`, the run's
settings (`config.json`, with the first backup of each command), the backup (Keras'
`BackupAndRestore`, which keeps the previous epoch's backup too). A backup therefore never
holds an epoch that `history.csv` lacks. The other way round, a kill after the row but
before the backup leaves a row of an epoch that resuming trains again: resuming drops the
rows from the epoch it restarts at, so that each epoch is logged once.
"""

from __future__ import annotations

import csv
import json
import os
import zipfile

import keras

from tfcontrast._checks import first_line
from tfcontrast._cli_flags import UsageError
from tfcontrast._files import open_new


def drop_rows_from(csv_path: str, epoch: int) -> None:
    """Removes the rows of epochs `>= epoch` from a history CSV (the whole file at 0)."""
    if not os.path.exists(csv_path):
        return
    if epoch <= 0:
        os.remove(csv_path)
        return
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    column = header.index("epoch") if "epoch" in header else 0
    kept = [row for row in body if row and int(row[column]) < epoch]
    if len(kept) == len(body):
        return
    partial = f"{csv_path}.partial"
    with open_new(partial, newline="") as f:
        csv.writer(f).writerows([header, *kept])
    os.replace(partial, csv_path)


def write_json(path: str, content) -> None:
    """Writes `content` to `path` whole or not at all."""
    partial = f"{path}.partial"
    with open_new(partial) as f:
        json.dump(content, f, indent=2)
    os.replace(partial, path)


def check_keras_file(path: str, flag: str = "--run_dir") -> None:
    """A UsageError naming `path` when it is not a whole `.keras` archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        broken = first_line(error)
    if broken is not None:
        raise UsageError(
            f"{flag}: {path} cannot be read ({broken}): the file is truncated or corrupt. "
            "Delete it and run the same `tfcontrast train` command again to write it anew "
            "from the run's backup."
        )


class RunRecorder(keras.callbacks.Callback):
    """History rows, settings and backup of a run directory (see the module docstring).

    Also restores the backup when training begins; a backup that cannot be read is a
    UsageError that names it and says how to start over.
    """

    def __init__(self, run_dir: str, config: dict):
        super().__init__()
        self.backup_dir = os.path.join(run_dir, "backup")
        self.config_path = os.path.join(run_dir, "config.json")
        self.history_path = os.path.join(run_dir, "history.csv")
        self._config = config
        # The backup is kept after the last epoch, so that running the same command
        # again finds the run complete instead of training it again. `double_checkpoint`
        # keeps the epoch before too: a backup cut short by a kill falls back on it.
        self._backup = keras.callbacks.BackupAndRestore(
            self.backup_dir, delete_checkpoint=False, double_checkpoint=True
        )
        self._history = keras.callbacks.CSVLogger(self.history_path, append=True)
        self._config_written = False
        self._history_open = False

    def set_model(self, model):
        super().set_model(model)
        self._backup.set_model(model)
        self._history.set_model(model)

    def on_train_begin(self, logs=None):
        try:
            self._backup.on_train_begin(logs)
        except (OSError, ValueError, KeyError) as error:
            if not os.path.isdir(self.backup_dir):
                raise
            raise UsageError(
                f"--run_dir: the backup in {self.backup_dir} cannot be read "
                f"({first_line(error)}). Delete {self.backup_dir} to train this run from its "
                "first epoch, or use another --run_dir."
            ) from error
        self._history_open = False

    def on_epoch_begin(self, epoch, logs=None):
        if not self._history_open:
            # The first epoch of this `fit`: where the backup restarted it. Rows from
            # there on were written after the last backup, by a run killed before it.
            drop_rows_from(self.history_path, epoch)
            self._history.on_train_begin()
            self._history_open = True
        self._history.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._history.on_epoch_end(epoch, logs)
        if not self._config_written:
            write_json(self.config_path, self._config)
            self._config_written = True
        self._backup.on_epoch_end(epoch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._backup.on_train_batch_end(batch, logs)

    def on_train_end(self, logs=None):
        if self._history_open:
            self._history.on_train_end(logs)
            self._history_open = False
        self._backup.on_train_end(logs)
