"""Atomic file writes and safe reads shared by the package (Survey §4.3, training infrastructure).

Long training runs are interrupted: by preemption, a full disk, a Ctrl-C in a notebook. Whatever was being
written at that moment (a token shard, a tokenizer, a checkpoint, the training log) must then be either the
old complete version or the new complete version, never a truncated mix that a later run reads as valid.
Every writer in minillm therefore goes through the few functions here:

- `atomic_write(path, write_fn)`: write a temporary file next to `path`, fsync it, os.replace() it into place.
- `atomic_write_text(path, text)`: the same for UTF-8 text.
- `replace_dir(tmp, target)`: the directory version, for outputs made of several files (checkpoints,
  prepared data): build them in a temporary directory, then swap it in.
- `fsync_dir(path)`: make a rename inside a directory durable.
- `read_json(path, what)`: read a JSON object, with errors that name the file and what to do.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def fsync_dir(path: str | os.PathLike) -> None:
    """Make renames inside directory `path` durable (POSIX); a no-op where directories cannot be opened.

    os.replace() is atomic, but the new directory entry may still sit in the kernel's cache: without this
    fsync a power cut right after a "successful" save can bring back the old name (or no name at all).
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows, where a directory cannot be opened like a file
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write_fn: Callable[[BinaryIO], None]) -> None:
    """Call write_fn(f) on a temporary binary file next to `path`, then move it into place.

    The temp file lives in the same directory so os.replace is a rename within one filesystem, which
    POSIX makes atomic: a reader sees either the old file or the complete new one, never a prefix.
    fsync before the rename so that a power cut cannot leave the new name pointing at unwritten data.
    On any error (including KeyboardInterrupt) the temp file is removed and the error re-raised.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: directory {path.parent} does not exist; create it first")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file private (0600); give it the mode a plain open() would (umask applied)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` as UTF-8 to `path` atomically (see `atomic_write`)."""
    data = text.encode("utf-8")  # encode first: a str that has no UTF-8 form fails before any file exists
    atomic_write(path, lambda f: f.write(data))


def replace_dir(tmp: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move the finished directory `tmp` to `target`, replacing an existing `target` safely.

    A directory cannot be renamed over a non-empty one, so an old `target` is first moved aside (into a
    hidden sibling, same filesystem), the new one renamed in, and only then is the old one deleted. If the
    rename in fails, the old directory is put back: at every moment either the old or the new one is there.
    `tmp` must be on the same filesystem as `target` (create it with tempfile.mkdtemp(dir=target.parent)).
    """
    tmp, target = Path(tmp), Path(target)
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
        os.replace(target, old / "old")  # never delete the old data before the new is in place
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:  # put the old directory back where it was
            os.replace(old / "old", target)
            old.rmdir()
        raise
    fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old)


def read_json(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """Read a JSON object from `path`; `what` names the kind of file in error messages ("tokenizer")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a valid UTF-8 JSON {what} file ({e}); re-create it with .save()") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a JSON {type(data).__name__}, expected an object; re-create it with .save()")
    return data
