"""Shared test helpers: small synthetic image folders and archives, an interrupted training run."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


def png_bytes(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    """Encode a uint8 array (H x W or H x W x 3) as an image file."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def make_imagefolder(root: Path, classes=("cat", "ant"), per_class=(3, 2), size=8, channels=1, seed=0) -> Path:
    """Write ``root/{train,test}/<class>/<i>.png`` with random pixels; return ``root``."""
    rng = np.random.default_rng(seed)
    for split, count in zip(("train", "test"), per_class, strict=True):
        for cls in classes:
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                shape = (size, size) if channels == 1 else (size, size, 3)
                (folder / f"{i}.png").write_bytes(png_bytes(rng.integers(0, 256, shape, dtype=np.uint8)))
    return root


def make_tar(folder: Path, target: Path, arcroot: str = "ds", extra: list[tarfile.TarInfo] | None = None) -> Path:
    """Pack ``folder`` under ``arcroot/`` into a .tar.gz, optionally with extra (hostile) members."""
    with tarfile.open(target, "w:gz") as tar:
        tar.add(folder, arcname=arcroot)
        for info in extra or []:
            data = b"x" * info.size
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return target


def make_zip(folder: Path, target: Path, arcroot: str = "ds") -> Path:
    """Pack ``folder`` under ``arcroot/`` into a .zip."""
    with zipfile.ZipFile(target, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{arcroot}/{path.relative_to(folder).as_posix()}")
    return target


def kill_in_epoch_2(trainer, train, test, monkeypatch, **fit_kwargs) -> None:
    """Run ``trainer.fit`` until a KeyboardInterrupt strikes in its second epoch, as in a killed job."""
    from tokencert.train import Trainer

    original = Trainer._train_epoch
    calls = []

    def killed(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_epoch", killed)
    try:
        with pytest.raises(KeyboardInterrupt):
            trainer.fit(train, test, **fit_kwargs)
    finally:
        monkeypatch.undo()
