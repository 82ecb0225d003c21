"""Reading image files from a directory, ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip`` safely.

Archives are read member by member in memory, never extracted. A member with an
absolute path, a ``..`` component, or a link (symbolic or hard) makes the whole archive
invalid: it is rejected with an error, not silently skipped. Members are read within
bounds: only those the caller wants (the rest are listed, never read), and none larger
than ``max_bytes`` (checked against the declared size before reading, and while reading).
"""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO


class ArchiveError(ValueError):
    """An archive that cannot be read, or one that is unsafe."""


ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


def is_archive(path: Path) -> bool:
    """Whether ``path`` has one of the supported archive suffixes."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def require_source(path: Path) -> None:
    """Raise :class:`ArchiveError` unless ``path`` is a directory or has a supported archive suffix."""
    if not path.is_dir() and not is_archive(path):
        raise ArchiveError(f"{path} is not a directory or a {', '.join(ARCHIVE_SUFFIXES)} archive")


def check_member_name(archive: Path, name: str) -> PurePosixPath:
    """Return the member's relative path, or raise when it is absolute or escapes via ``..``."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"{archive}: unsafe member with an absolute path: {name!r}")
    if ".." in pure.parts:
        raise ArchiveError(f"{archive}: unsafe member escaping the archive root: {name!r}")
    return pure


@dataclass(frozen=True)
class Entry:
    """A directory or file of a dataset source; ``data`` is None for directories and for files
    the caller did not want (they are never read)."""

    path: PurePosixPath
    is_dir: bool
    data: bytes | None = None


def iter_entries(source: Path, wanted: Callable[[PurePosixPath], bool], max_bytes: int) -> Iterator[Entry]:
    """Every directory and regular file of a directory or archive; the bytes of the files
    ``wanted`` accepts, each at most ``max_bytes`` long (else :class:`ArchiveError` naming it)."""
    if not source.exists():
        raise FileNotFoundError(f"{source}: dataset path does not exist")
    require_source(source)
    if source.is_dir():
        yield from _iter_dir(source, wanted, max_bytes)
    elif source.name.lower().endswith(".zip"):
        yield from _iter_zip(source, wanted, max_bytes)
    else:
        yield from _iter_tar(source, wanted, max_bytes)


def _read_bounded(source: Path, name: str, declared: int, open_member: Callable[[], IO[bytes]],
                  max_bytes: int) -> bytes:
    """A member's bytes, refusing it when its declared or actual size exceeds ``max_bytes``."""
    if declared > max_bytes:
        raise ArchiveError(f"{source}: member {name!r} is {declared} bytes, more than the {max_bytes} "
                           "an image of the declared size can take")
    with open_member() as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ArchiveError(f"{source}: member {name!r} is larger than the {max_bytes} bytes it declares at most")
    return data


def _iter_dir(root: Path, wanted: Callable[[PurePosixPath], bool], max_bytes: int) -> Iterator[Entry]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for dname in dirnames:
            full = Path(dirpath) / dname
            if full.is_symlink():
                raise ArchiveError(f"{full}: symbolic links are not allowed in a dataset directory")
            yield Entry(PurePosixPath(full.relative_to(root).as_posix()), True)
        for fname in sorted(filenames):
            full = Path(dirpath) / fname
            if full.is_symlink():
                raise ArchiveError(f"{full}: symbolic links are not allowed in a dataset directory")
            rel = PurePosixPath(full.relative_to(root).as_posix())
            data = (_read_bounded(root, str(rel), full.stat().st_size, lambda f=full: open(f, "rb"), max_bytes)
                    if wanted(rel) else None)
            yield Entry(rel, False, data)


def _iter_tar(path: Path, wanted: Callable[[PurePosixPath], bool], max_bytes: int) -> Iterator[Entry]:
    try:
        with tarfile.open(path, mode="r:*") as tar:
            for member in tar:
                rel = check_member_name(path, member.name)
                if member.issym() or member.islnk():
                    raise ArchiveError(f"{path}: links are not allowed in dataset archives: {member.name!r}")
                if member.isdir():
                    yield Entry(rel, True)
                    continue
                if not member.isfile():
                    raise ArchiveError(f"{path}: special file not allowed: {member.name!r}")
                if not wanted(rel):
                    yield Entry(rel, False)  # tarfile skips over its bytes; they are never held in memory
                    continue
                fh = tar.extractfile(member)
                if fh is None:
                    raise ArchiveError(f"{path}: cannot read member {member.name!r}")
                yield Entry(rel, False, _read_bounded(path, member.name, member.size, lambda f=fh: f, max_bytes))
            _read_to_end(tar)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveError(f"{path}: corrupt or truncated archive ({exc}; its sha256 in the dataset's spec would "
                           "catch a damaged download)") from exc


def _read_to_end(tar: tarfile.TarFile) -> None:
    """Read a compressed archive's stream past the tar's end marker to its end, where gzip checks its
    CRC and length (an archive cut short in its trailer would otherwise pass)."""
    stream = tar.fileobj
    if stream is not None and not isinstance(stream, io.BufferedReader) and hasattr(stream, "read"):
        while stream.read(1 << 20):
            pass


def _iter_zip(path: Path, wanted: Callable[[PurePosixPath], bool], max_bytes: int) -> Iterator[Entry]:
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                rel = check_member_name(path, info.filename)
                mode = (info.external_attr >> 16) & 0o170000
                if mode == 0o120000:
                    raise ArchiveError(f"{path}: links are not allowed in dataset archives: {info.filename!r}")
                if info.is_dir():
                    yield Entry(rel, True)
                    continue
                data = (_read_bounded(path, info.filename, info.file_size, lambda i=info: zf.open(i), max_bytes)
                        if wanted(rel) else None)
                yield Entry(rel, False, data)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ArchiveError(f"{path}: corrupt or truncated archive ({exc})") from exc
