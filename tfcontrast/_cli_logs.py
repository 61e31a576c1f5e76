"""TensorFlow's start-up and C++ log lines, silenced for the command line unless asked for.

TensorFlow prints lines nobody running `tfcontrast train` can act on: the oneDNN notice,
"Could not find cuda drivers" from `cudart_stub`, absl's "All log messages before
absl::InitializeLog()" warning, grappler's `PredictCost` errors. `TF_CPP_MIN_LOG_LEVEL`
silences most of them, but only when set before TensorFlow loads, and the `cudart_stub`
lines (logged through absl while TensorFlow's libraries load, before they read the
variable) ignore it: those are dropped from stderr while TensorFlow is imported.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

# A glog / absl C++ log line: severity letter, date (MMDD), time, thread, file:line]. (Before
# absl::InitializeLog() the date and time read "0000 00:00:<seconds since 1970>".)
_LOG_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+\s+\S+:\d+\]")
_SEVERITY = "IWEF"
_ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called"


def min_log_level(verbosity: int | None) -> int:
    """`TF_CPP_MIN_LOG_LEVEL` for absl's `--verbosity` (None: not given, quiet)."""
    if verbosity is None:
        return 3
    # absl: 0 info, -1 warning, -2 error, -3 fatal; TensorFlow: 0 info ... 3 fatal only.
    return min(3, max(0, -verbosity))


def configure(verbosity: int | None, environ=None) -> int:
    """Sets `TF_CPP_MIN_LOG_LEVEL` from `verbosity` unless the user set it; returns the
    level in effect. Call before TensorFlow is imported."""
    environ = os.environ if environ is None else environ
    environ.setdefault("TF_CPP_MIN_LOG_LEVEL", str(min_log_level(verbosity)))
    try:
        return int(environ["TF_CPP_MIN_LOG_LEVEL"])
    except ValueError:
        return 0


def filter_lines(text: str, level: int) -> str:
    """`text` without the C++ log lines below `level` (and absl's notice that they go to
    stderr). Other lines stay, so that nothing of Python's is lost."""
    if level <= 0:
        return text
    kept = []
    for line in text.splitlines(keepends=True):
        match = _LOG_LINE.match(line)
        if match and _SEVERITY.index(match.group(1)) < level:
            continue
        if not match and line.startswith(_ABSL_NOTICE):
            continue
        kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def _filtered_stderr(level: int):
    """Routes file descriptor 2 (C++ and Python alike) through `filter_lines`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
            # On a failure, every line may help to understand it.
            sys.stderr.write(text if failed else filter_lines(text, level))
            sys.stderr.flush()


def import_tensorflow(level: int) -> None:
    """Imports TensorFlow, leaving out of stderr its start-up lines below `level`."""
    if "tensorflow" in sys.modules or level <= 0:
        return
    with _filtered_stderr(level):
        import tensorflow  # noqa: F401
