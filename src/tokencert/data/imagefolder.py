"""The ``imagefolder`` source: ``[root/]{train,test}/<class>/<image>`` in a directory or archive."""

from __future__ import annotations

import io
import logging
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from ..io import atomic_path, sha256_file
from .archive import iter_entries, require_source
from .errors import DatasetError, DeclarationError
from .store import Split

log = logging.getLogger("tokencert")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
MODES = {1: "L", 3: "RGB"}
SPLITS = ("train", "test")
FILE_SLACK = 64 << 10  # headers and metadata chunks an image file may carry beyond its pixels


def max_image_bytes(channels: int, image_size: int) -> int:
    """The largest file an image of the declared shape can reasonably be: 4x its raw pixels
    (uncompressed PNG/BMP stay below) plus headers. A larger member is refused unread."""
    return 4 * channels * image_size * image_size + FILE_SLACK


def is_leftover(rel: PurePosixPath) -> bool:
    """macOS archive leftovers: ``__MACOSX/`` folders and ``._*`` AppleDouble files (no images, whatever
    their suffix)."""
    return "__MACOSX" in rel.parts or rel.name.startswith("._")


def is_image(rel: PurePosixPath) -> bool:
    """Whether a member is an image file (by suffix, not a macOS leftover); others are listed and
    skipped unread."""
    return rel.suffix.lower() in IMAGE_SUFFIXES and not is_leftover(rel)


def local_path(location: str) -> Path | None:
    """The path of a local ``location`` (a plain path or a ``file://`` URL); None for a download."""
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and location[1] == ":"):
        return Path(urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else location)
    return None


def fetch(location: str, cache_dir: Path) -> Path:
    """Local path of ``location``: a plain path, or a ``file://``/``http(s)://`` URL downloaded to ``cache_dir``."""
    path = local_path(location)
    if path is not None:
        if not path.exists():
            raise DatasetError(f"{path}: dataset path does not exist")
        return path
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme not in ("http", "https"):
        raise DatasetError(f"{location}: unsupported URL scheme '{parsed.scheme}' (file, http, https)")
    name = Path(parsed.path).name or "dataset"
    target = cache_dir / name
    if not target.exists():
        log.info("downloading %s -> %s", location, target)
        try:
            with urllib.request.urlopen(location, timeout=60) as resp, atomic_path(target) as tmp:
                with open(tmp, "wb") as fh:
                    while block := resp.read(1 << 20):
                        fh.write(block)
        except OSError as exc:
            raise DatasetError(f"{location}: download failed ({exc})") from exc
    return target


def verify_sha256(path: Path, expected: str | None) -> None:
    """Raise :class:`DatasetError` when ``path``'s sha256 differs from ``expected``."""
    if expected is None:
        return
    if path.is_dir():
        raise DatasetError(f"{path}: sha256 can only be checked for an archive file, not a directory")
    actual = sha256_file(path)
    if actual.lower() != expected.lower():
        raise DatasetError(f"{path}: sha256 mismatch (expected {expected.lower()}, got {actual})")


def _decode(name: str, data: bytes, channels: int, size: int) -> np.ndarray:
    """Decode one image; its header's size and mode are checked before any pixel is decoded."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.size != (size, size):
                raise DeclarationError("image_size", f"{name}: image size {img.size[0]}x{img.size[1]}, "
                                       f"expected {size}x{size}")
            if img.mode != MODES[channels]:
                raise DeclarationError("channels", f"{name}: image mode {img.mode} but the dataset declares "
                                       f"{channels} channel(s) (mode {MODES[channels]})")
            img.load()
            arr = np.asarray(img, dtype=np.uint8)
    except Image.DecompressionBombError as exc:
        raise DatasetError(f"{name}: image too large to decode ({exc})") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DatasetError(f"{name}: cannot decode image ({exc})") from exc
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


Select = Callable[[str, torch.Tensor, list[str]], "torch.Tensor | None"]
"""``select(split, labels, classes)``: the sorted indices of the images of ``split`` to keep, or None for all."""


Members = dict[str, tuple[list[tuple[str, bytes]], torch.Tensor]]
"""Per split: the image members (name, bytes) in label order, and their labels."""


def read_imagefolder(source: Path, channels: int, image_size: int,
                     classes: list[str] | None = None, select: Select | None = None) -> dict[str, Split]:
    """The images of ``source`` as ``{"train": Split, "test": Split}``: the members are read (bounded,
    :func:`scan_imagefolder`), then only the images ``select`` keeps are decoded (``limit_train`` of 60,000)."""
    names, members = scan_imagefolder(source, channels, image_size, classes)
    out = {}
    for split, (items, labels) in members.items():
        keep = None if select is None else select(split, labels, names)
        indices = range(len(items)) if keep is None else keep.tolist()
        images = [_decode(f"{source}:{items[i][0]}", items[i][1], channels, image_size)
                  for i in tqdm(indices, desc=f"decoding {source.name} ({split})", unit="img", mininterval=2.0)]
        out[split] = Split(images=torch.from_numpy(np.stack(images)),
                           labels=labels if keep is None else labels[keep], classes=names)
    return out


def scan_imagefolder(source: Path, channels: int, image_size: int,
                     classes: list[str] | None = None) -> tuple[list[str], Members]:
    """The classes and every split's image members of ``source``, read but not decoded.

    Classes are the sorted class folder names and must agree between the splits; a class
    folder without images is an error. With ``classes`` declared, they are the classes in
    that order (a class may then have no images in a split), and an image of another class
    is an error. Non-image members are skipped unread and listed in the log.
    """
    found: dict[str, dict[str, list[tuple[str, bytes]]]] = {s: defaultdict(list) for s in SPLITS}
    folders: dict[str, set[str]] = {s: set() for s in SPLITS}
    skipped: list[str] = []
    seen: set[PurePosixPath] = set()
    prefix: tuple[str, ...] | None = None
    bar = tqdm(desc=f"reading {source.name}", unit="img", mininterval=2.0)
    for entry in iter_entries(source, is_image, max_image_bytes(channels, image_size)):
        rel = entry.path
        if rel in seen:
            raise DatasetError(f"{source}: member {str(rel)!r} appears twice (an image would count twice)")
        seen.add(rel)
        if entry.is_dir:
            if len(rel.parts) >= 2 and rel.parts[-2] in SPLITS and not is_leftover(rel):
                folders[rel.parts[-2]].add(rel.parts[-1])
            continue
        if entry.data is None:
            skipped.append(str(rel))
            continue
        data = entry.data
        split, cls, root = _locate(source, rel)
        if prefix is None:
            prefix = root
        elif root != prefix:
            raise DatasetError(f"{source}: images under two different roots ({'/'.join(prefix)!r}, {'/'.join(root)!r})")
        found[split][cls].append((str(rel), data))
        bar.update()
    bar.close()
    if skipped:
        log.info("%s: skipped %d non-image member(s) unread: %s", source, len(skipped), ", ".join(skipped))
    if classes is None:
        for split in SPLITS:
            empty = sorted(folders[split] - set(found[split]))
            if empty and found[split]:
                raise DatasetError(f"{source}: class folder(s) {empty} of '{split}' hold no images "
                                   "(declare `classes:` to keep a class without images)")
    return _order(source, found, classes)


def _locate(source: Path, rel: PurePosixPath) -> tuple[str, str, tuple[str, ...]]:
    parts = rel.parts
    if len(parts) < 3 or parts[-3] not in SPLITS:
        raise DatasetError(f"{source}: image {rel} is not at <root>/{{train,test}}/<class>/<image>")
    return parts[-3], parts[-2], parts[:-3]


def _order(source: Path, found: dict[str, dict[str, list[tuple[str, bytes]]]],
           declared: list[str] | None) -> tuple[list[str], Members]:
    for split in SPLITS:
        if not found[split]:
            raise DatasetError(f"{source}: no images found for split '{split}'")
    if declared is None and len(found["train"]) < 2:
        raise DatasetError(f"{source}: images of one class only ({sorted(found['train'])}): a classifier needs two")
    if declared is not None:
        classes = list(declared)
        for split in SPLITS:
            extra = sorted(set(found[split]) - set(classes))
            if extra:
                raise DatasetError(f"{source}: '{split}' has images of class(es) {extra} not in the declared classes")
    else:
        classes = sorted(found["train"])
        if sorted(found["test"]) != classes:
            raise DatasetError(
                f"{source}: train classes {classes} differ from test classes {sorted(found['test'])}"
            )
    out = {}
    for split in SPLITS:
        members, labels = [], []
        for label, cls in enumerate(classes):
            # by file name within a class, as always (the stratified subsets of the limits depend on it)
            ordered = sorted(found[split][cls], key=lambda item: PurePosixPath(item[0]).name)
            members.extend(ordered)
            labels.extend([label] * len(ordered))
        out[split] = (members, torch.tensor(labels, dtype=torch.int64))
    return classes, out


def first_image(path: Path, channels: int, image_size: int) -> None:
    """Decode the first image member of ``path`` (directory or archive) against the declared shape:
    a wrong ``image_size`` or ``channels`` is found in milliseconds, before the whole archive is read."""
    for entry in iter_entries(path, is_image, max_image_bytes(channels, image_size)):
        if entry.data is not None:
            _decode(f"{path}:{entry.path}", entry.data, channels, image_size)
            return


def load_imagefolder(location: str, channels: int, image_size: int, cache_dir: Path, sha256: str | None,
                     classes: list[str] | None = None, select: Select | None = None) -> dict[str, Split]:
    """Fetch, verify and decode an imagefolder dataset (only the images ``select`` keeps)."""
    path = fetch(location, cache_dir)
    require_source(path)
    verify_sha256(path, sha256)
    return read_imagefolder(path, channels, image_size, classes, select)
