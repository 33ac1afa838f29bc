"""Atomic, deterministic output files.

Every output is written to a temporary sibling and renamed into place, so an
interrupted run leaves either the previous file or the new one, never half of one.
Byte-for-byte determinism (no timestamps inside files) keeps DVC hashes stable.

A write that fails for want of room (no space left, a file-size limit, a disk quota), on
a read-only file system or in a folder that forbids it becomes an
:class:`~lmt_stereotype.errors.OutputError` naming the output: the temporary file is
removed and the previous output stays as it was. Other errors pass unchanged.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmt_stereotype.errors import OutputError

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_UMASK = os.umask(0)
os.umask(_UMASK)


_CANNOT_WRITE = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (a file-size limit or a full file system)",
    errno.EROFS: "read-only file system",
}
"""Errors that only a write can cause: inside a block they are about the output."""


def cannot_write(exc: OSError) -> str | None:
    """Why ``exc`` says an output cannot be written, or None if it is about something else."""
    return _CANNOT_WRITE.get(exc.errno)


_KEPT = "; the previous version is kept"


def _output_error(path: Path, exc: OSError, kept: bool) -> OutputError:
    reason = cannot_write(exc) or exc.strerror or str(exc)
    return OutputError(path, f"cannot be written: {reason}" + (_KEPT if kept else ""))


@contextmanager
def _writing(path: Path, *, setup: bool) -> Iterator[None]:
    """OSErrors of writing ``path`` as OutputError: any while preparing (``setup``), write errors after."""
    try:
        yield
    except OSError as exc:
        if setup or cannot_write(exc):
            raise _output_error(path, exc, path.exists()) from exc
        raise


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    with _writing(path, setup=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        with _writing(path, setup=False):
            os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual mode
            yield tmp_path
            os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; swap it in for ``path`` if the block succeeds."""
    path = Path(path)
    with _writing(path, setup=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old = path.with_name(f".{path.name}.old")
    try:
        with _writing(path, setup=False):
            os.chmod(tmp, 0o777 & ~_UMASK)
            try:
                yield tmp
            except OutputError as exc:  # a file of the folder: named where it belongs, not in the temporary folder
                if not exc.path.is_relative_to(tmp):
                    raise
                problem = exc.problem.removesuffix(_KEPT) + (_KEPT if path.exists() else "")
                raise OutputError(path / exc.path.relative_to(tmp), problem) from exc
            shutil.rmtree(old, ignore_errors=True)
            if path.exists():
                os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                if old.exists():
                    os.replace(old, path)  # the previous output back in its place
                raise
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_table(df: pd.DataFrame, path: Path | str) -> None:
    """Write a table as parquet (``.parquet``) or CSV (anything else), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False, lineterminator="\n")


def read_table(path: Path | str) -> pd.DataFrame:
    path = Path(path)
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def _json_ready(obj: Any) -> Any:
    """NaN and infinities become null (strict JSON); numpy scalars and arrays become Python values."""
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_json(obj: Any, path: Path | str, sort_keys: bool = True) -> None:
    """Strict JSON (NaN as null), atomically; ``sort_keys=False`` keeps the caller's order."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_json_ready(obj), indent=2, sort_keys=sort_keys, allow_nan=False) + "\n")


def save_npz(path: Path | str, **arrays: np.ndarray) -> None:
    """Like ``np.savez_compressed`` but atomic and byte-identical for identical arrays."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())
