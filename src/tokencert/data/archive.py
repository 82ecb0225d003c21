"""Reading image files from a directory, ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip`` safely.

Archives are read member by member in memory, never extracted. A member with an
absolute path, a ``..`` component, or a link (symbolic or hard) makes the whole archive
invalid: it is rejected with an error, not silently skipped.
"""

from __future__ import annotations

import os
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath


class ArchiveError(ValueError):
    """An archive that cannot be read, or one that is unsafe."""


ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


def is_archive(path: Path) -> bool:
    """Whether ``path`` has one of the supported archive suffixes."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def check_member_name(archive: Path, name: str) -> PurePosixPath:
    """Return the member's relative path, or raise when it is absolute or escapes via ``..``."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"{archive}: unsafe member with an absolute path: {name!r}")
    if ".." in pure.parts:
        raise ArchiveError(f"{archive}: unsafe member escaping the archive root: {name!r}")
    return pure


def iter_files(source: Path) -> Iterator[tuple[PurePosixPath, bytes]]:
    """Yield ``(relative path, bytes)`` of every regular file in a directory or archive."""
    if source.is_dir():
        yield from _iter_dir(source)
    elif not source.exists():
        raise FileNotFoundError(f"{source}: dataset path does not exist")
    elif source.name.lower().endswith(".zip"):
        yield from _iter_zip(source)
    elif is_archive(source):
        yield from _iter_tar(source)
    else:
        raise ArchiveError(f"{source}: not a directory or a {', '.join(ARCHIVE_SUFFIXES)} archive")


def _iter_dir(root: Path) -> Iterator[tuple[PurePosixPath, bytes]]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for fname in sorted(filenames):
            full = Path(dirpath) / fname
            if full.is_symlink():
                raise ArchiveError(f"{full}: symbolic links are not allowed in a dataset directory")
            yield PurePosixPath(full.relative_to(root).as_posix()), full.read_bytes()


def _iter_tar(path: Path) -> Iterator[tuple[PurePosixPath, bytes]]:
    try:
        with tarfile.open(path, mode="r:*") as tar:
            for member in tar:
                rel = check_member_name(path, member.name)
                if member.issym() or member.islnk():
                    raise ArchiveError(f"{path}: links are not allowed in dataset archives: {member.name!r}")
                if member.isdir():
                    continue
                if not member.isfile():
                    raise ArchiveError(f"{path}: special file not allowed: {member.name!r}")
                fh = tar.extractfile(member)
                if fh is None:
                    raise ArchiveError(f"{path}: cannot read member {member.name!r}")
                yield rel, fh.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveError(f"{path}: corrupt or truncated archive ({exc})") from exc


def _iter_zip(path: Path) -> Iterator[tuple[PurePosixPath, bytes]]:
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                rel = check_member_name(path, info.filename)
                mode = (info.external_attr >> 16) & 0o170000
                if mode == 0o120000:
                    raise ArchiveError(f"{path}: links are not allowed in dataset archives: {info.filename!r}")
                if info.is_dir():
                    continue
                yield rel, zf.read(info)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ArchiveError(f"{path}: corrupt or truncated archive ({exc})") from exc
