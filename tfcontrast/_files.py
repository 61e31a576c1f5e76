"""Writing files that a user's directory may have been tampered with: links are never
written through, and names read from files stay names (private).

A run directory, an export directory and an index are written by tfcontrast alone: a
symbolic link found in one was planted, and writing through it would write wherever it
points. The helpers here remove such entries instead of following them, and refuse names
that would leave the directory they are joined to.
"""

from __future__ import annotations

import os
import shutil


def remove_entry(path: str) -> None:
    """Removes whatever is at `path`: a link itself (never what it points to), a file, or a
    directory tree. Nothing there is fine."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def open_new(path: str, mode: str = "w", **kwargs):
    """Opens `path` for writing as a new file, whatever was there before (a link is
    removed, not followed; `O_NOFOLLOW` and `O_EXCL` make sure of it)."""
    remove_entry(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    return os.fdopen(os.open(path, flags, 0o644), mode, **kwargs)


def remove_links(directory: str) -> list[str]:
    """Removes every symbolic link inside `directory` (not `directory` itself, which the
    user named) and returns their paths; links to directories are not descended into."""
    removed = []
    if not os.path.isdir(directory):
        return removed
    for root, dirs, files in os.walk(directory):  # os.walk does not follow links
        for name in dirs + files:
            path = os.path.join(root, name)
            if os.path.islink(path):
                os.unlink(path)
                removed.append(path)
    return removed


def check_name(name: str, what: str) -> str:
    """`name` when it is a plain file name (no directory part, not `.` or `..`, no control
    characters); a ValueError naming `what` otherwise."""
    text = str(name)
    if (
        not text
        or text in (".", "..")
        or "/" in text
        or (os.sep != "/" and os.sep in text)
        or (os.altsep is not None and os.altsep in text)
        or not text.isprintable()
    ):
        raise ValueError(
            f"{what} {text!r} is not a plain name: expected no '/' or '..', no control "
            "characters (it names a file inside the directory given)."
        )
    return text


def printable(text) -> str:
    """`text` with its control characters escaped (`\\n` as the two characters), so that a
    name read from a file cannot forge lines of output."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
