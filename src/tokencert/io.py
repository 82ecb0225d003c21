"""Atomic file output and safe tensor loading.

Every file the pipeline produces goes through these helpers: data is written to a
temporary file in the target directory and renamed into place, so an interrupted run
never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch


def current_umask() -> int:
    """The process's umask (read by setting it, then restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched. The file
    gets the mode a plain ``open`` would give it (0666 less the user's umask), not the
    private 0600 of a temporary file, so colleagues sharing a group file system can read it.
    Temporary files of ``path`` that a killed job left behind are removed first (one job
    writes an output, so none of them is still being written).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_columns(path: str | os.PathLike[str], columns: Mapping[str, Sequence[Any]]) -> None:
    """A CSV of equal-length columns, header first, written atomically. The csv module, not pandas: pandas
    would add 0.3 s of import to every attack and certificate job, which only write and read these."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*columns.values(), strict=True))
    write_text(path, buf.getvalue())


def read_columns(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """The columns of a CSV written by :func:`write_columns` (header first), as strings."""
    with open(path, newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    return {name: [row[i] for row in rows] for i, name in enumerate(header)}


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically (tensors and numpy values allowed).

    Non-finite floats are written as JSON ``Infinity``/``NaN`` (Python's json module reads them).
    """
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def save_torch(path: str | os.PathLike[str], obj: Any) -> None:
    """``torch.save`` atomically. ``obj`` should hold only tensors and plain Python data.

    Saved through a file object: torch names the zip's records after a *path*'s file name (the
    random temporary one), after a file object ``archive/``, so equal tensors give equal bytes."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def load_torch(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Any:
    """Load a file written by :func:`save_torch` without full unpickling."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt file, pickled objects, wrong format
        raise ValueError(f"{path}: cannot load tensors safely ({exc})") from exc


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


WALL_CLOCK = frozenset({"seconds_per_image", "train_seconds", "seconds", "time"})
"""The wall-clock fields of our JSON summaries (and columns of metrics.csv and smoothing's TSV): the
only content that differs between two runs of the same parameters."""


def without_wall_clock(obj: Any) -> Any:
    """``obj`` (parsed JSON) without its :data:`WALL_CLOCK` fields, at any depth."""
    if isinstance(obj, dict):
        return {k: without_wall_clock(v) for k, v in obj.items() if k not in WALL_CLOCK}
    if isinstance(obj, list):
        return [without_wall_clock(v) for v in obj]
    return obj


def stable_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a result as DVC's stage stamps list it: a JSON file's content without its wall-clock
    fields (so two runs of the same parameters give the same stamp), any other file's bytes."""
    if Path(path).suffix != ".json":
        return sha256_file(path)
    text = json.dumps(without_wall_clock(read_json(path)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_tensor(t: torch.Tensor) -> str:
    """Hex sha256 of a tensor's contiguous CPU bytes (dtype and shape not included)."""
    arr = t.detach().cpu().contiguous().numpy()
    return hashlib.sha256(arr.tobytes()).hexdigest()
