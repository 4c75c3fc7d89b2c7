"""K-fold cross-validation through train.py on a generated set in the colon layout: folds.csv, the
printed mean +- std, --resume after an interruption, the data-set registry, AUC."""

import csv
import os
import sys

import numpy as np
import pytest
import torch

from zoomkern.data.colon_like import make_colon_like
from zoomkern.training import TrainConfig, checkpoint
from zoomkern.training import loop as loop_mod
from zoomkern.training.kfold import auc, binary_auc
from zoomkern.training.registry import DATASETS, DataSpec, build, register

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))

TINY = ["--epochs", "2", "--batch-size", "2", "--n-tiles", "2", "--n-sub", "1", "--n-tiles-eval", "2",
        "--n-sub-eval", "1", "--feature-widths", "4", "--plot-images", "0", "--device", "cpu",
        "--no-amp", "--threads", "1", "--lr", "1e-2"]  # fmt: skip


@pytest.fixture(scope="module")
def colon_root(tmp_path_factory):
    return make_colon_like(tmp_path_factory.mktemp("colon"), 8, folds=2, progress=False)


def _read(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_kfold_writes_folds_csv_and_resumes(colon_root, tmp_path, monkeypatch, capsys):
    import train as train_script

    args = ["--dataset", "colon", "--root", str(colon_root), "--folds", "2", *TINY]
    assert train_script.main([*args, "--out", str(tmp_path / "a")]) == 0
    line = capsys.readouterr().out
    assert "2-fold cross-validation: accuracy" in line and "+-" in line and "AUC" in line
    rows = _read(tmp_path / "a" / "folds.csv")
    assert [r["fold"] for r in rows] == ["1", "2", "mean", "std"]
    acc = [float(r["test_acc"]) for r in rows[:2]]
    assert float(rows[2]["test_acc"]) == pytest.approx(np.mean(acc))
    assert float(rows[3]["test_acc"]) == pytest.approx(np.std(acc, ddof=1))
    for r in rows[:2]:
        assert 0 <= float(r["test_acc"]) <= 1 and 0 <= float(r["test_auc"]) <= 1 and r["epochs_run"] == "2"

    # Interrupt the second fold after its first epoch (each epoch calls run_epoch twice: train, test).
    real, calls = loop_mod.run_epoch, []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(loop_mod, "run_epoch", flaky)
    with pytest.raises(KeyboardInterrupt):
        train_script.main([*args, "--out", str(tmp_path / "b")])
    assert checkpoint.load(str(tmp_path / "b" / "fold_2" / "checkpoint.pt"))["epoch"] == 0
    calls.clear()
    assert train_script.main([*args, "--out", str(tmp_path / "b"), "--resume"]) == 0
    assert len(calls) == 2  # fold 1 skipped, fold 2 ran its one missing epoch
    assert _read(tmp_path / "b" / "folds.csv")[:2] == [
        {**r, "total_seconds": r2["total_seconds"], "train_sec_per_sample": r2["train_sec_per_sample"]}
        for r, r2 in zip(rows[:2], _read(tmp_path / "b" / "folds.csv")[:2], strict=True)
    ]
    a = checkpoint.load(str(tmp_path / "a" / "fold_2" / "checkpoint.pt"))["model"]
    b = checkpoint.load(str(tmp_path / "b" / "fold_2" / "checkpoint.pt"))["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)  # resumed bit for bit


def test_single_fold_run_takes_rgb_and_the_preset(colon_root, tmp_path):
    import train as train_script

    cfg = train_script.parse(["--dataset", "colon", "--root", str(colon_root), "--fold", "2"])
    assert cfg.patch_size == 27 and cfg.tile_size == 250 and cfg.prior is False and cfg.augment
    from zoomkern.training.data import datasets

    per_epoch, test = datasets(cfg)
    assert cfg.in_channels == 3 and cfg.n_classes == 2
    assert len(per_epoch) == cfg.epochs and len(per_epoch[0]) + len(test) == 8
    from zoomkern.training import build_model

    out = build_model(cfg).eval()(*[torch.stack([test[i][j] for i in range(2)]) for j in (0, 1)])
    assert out["logits"].shape == (2, 2)


def test_registry_and_errors(colon_root, tmp_path):
    assert {"megapixel_mnist", "colon", "traffic_signs"} <= set(DATASETS)
    with pytest.raises(ValueError, match="dataset='nope': unknown; choose one of"):
        build(TrainConfig(dataset="nope"))
    with pytest.raises(ValueError, match="in_channels=1 but the colon images have 3"):
        build(TrainConfig(dataset="colon", root=str(colon_root), in_channels=1))

    @register("_test_toy")
    def _toy(cfg, world):
        return DataSpec(["train"], "test", 3, 2)

    try:
        with pytest.raises(ValueError, match="already registered"):
            register("_test_toy")(_toy)
        assert build(TrainConfig(dataset="_test_toy")) == (["train"], "test", 3, 2)
    finally:
        del DATASETS["_test_toy"]
    from zoomkern.training.kfold import run_kfold

    with pytest.raises(ValueError, match="--folds 3: .* holds fold CSVs for 2 folds"):
        run_kfold(TrainConfig(dataset="colon", root=str(colon_root), folds=3, out=str(tmp_path)))
    with pytest.raises(ValueError, match="folds=1"):
        TrainConfig(folds=1)


def test_auc_against_pairwise_definition():
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = rng.integers(0, 5, 30).astype(float)  # many ties
        y = rng.integers(0, 2, 30).astype(bool)
        pos, neg = s[y], s[~y]
        want = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (
            len(pos) * len(neg)
        )
        assert binary_auc(s, y) == pytest.approx(want)
    assert np.isnan(binary_auc([0.1, 0.2], [True, True]))
    p = np.eye(3)[[0, 1, 2, 0]] * 0.8 + 0.1
    assert auc(p, np.array([0, 1, 2, 0])) == 1.0
