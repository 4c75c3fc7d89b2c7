"""Training loop: exact resume, same seed -> same run, safe checkpoints, clear errors, the CLI."""

import os
import sys

import pytest
import torch

from zoomkern.data import make_megapixel_mnist
from zoomkern.training import TrainConfig, checkpoint, train

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mm")
    make_megapixel_mnist(root, 12, 6, size=(128, 128), n_noise=3, scale=0.25, progress=False)
    make_megapixel_mnist(f"{root}_noise0", 12, 0, size=(128, 128), n_noise=0, scale=0.25, progress=False)
    return str(root)


def _cfg(root, out, **kw):
    args = dict(
        root=root,
        size=(128, 128),
        n_train=12,
        n_test=6,
        n_noise=3,
        scale=0.25,
        model="zoomin",
        tile_size=64,
        s2=0.5,
        sub_grid=(4, 4),
        patch_size=24,
        n_tiles=3,
        n_sub=2,
        feature_widths=(4, 8),
        epochs=2,
        batch_size=4,
        lr=1e-2,
        out=str(out),
        plot_images=0,
        device="cpu",
        amp=False,
    )
    args.update(kw)
    return TrainConfig(**args)


def _weights(path):
    return checkpoint.load(path)["model"]


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=f"{k} differs")


def test_resume_continues_exactly(tiny_root, tmp_path):
    full = train(_cfg(tiny_root, tmp_path / "full", epochs=3, noise_curriculum="0:1"))
    train(
        _cfg(tiny_root, tmp_path / "part", epochs=3, noise_curriculum="0:1", time_limit_min=1e-9)
    )  # stops after 1
    assert checkpoint.load(str(tmp_path / "part" / "checkpoint.pt"))["epoch"] == 0
    resumed = train(_cfg(tiny_root, tmp_path / "part", epochs=3, noise_curriculum="0:1", resume=True))
    _assert_same(_weights(full["checkpoint"]), _weights(resumed["checkpoint"]))
    assert resumed["test_acc"] == full["test_acc"]
    with open(resumed["csv"]) as f:
        assert len(f.readlines()) == 1 + 3  # header + one row per epoch, none duplicated by the resume


def test_same_seed_same_run(tiny_root, tmp_path):
    a = train(_cfg(tiny_root, tmp_path / "a", model="ats", n_patches=3, epochs=1))
    b = train(_cfg(tiny_root, tmp_path / "b", model="ats", n_patches=3, epochs=1))
    _assert_same(_weights(a["checkpoint"]), _weights(b["checkpoint"]))


@pytest.mark.parametrize("model", ["cnn_lowres", "cnn_full"])
def test_baselines_train(tiny_root, tmp_path, model):
    s = train(_cfg(tiny_root, tmp_path / model, model=model, epochs=1))
    assert 0.0 <= s["test_acc"] <= 1.0 and s["train_sec_per_sample"] > 0


def test_plot_written(tiny_root, tmp_path):
    s = train(_cfg(tiny_root, tmp_path / "p", epochs=1, plot_images=2))
    assert os.path.getsize(s["plot"]) > 1000


def test_checkpoint_is_weights_only_and_atomic(tiny_root, tmp_path):
    s = train(_cfg(tiny_root, tmp_path / "c", epochs=1))
    torch.load(s["checkpoint"], weights_only=True)  # loads without unpickling code
    assert not os.path.exists(s["checkpoint"] + ".tmp")
    with open(s["checkpoint"], "rb") as f:
        head = f.read(200)
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(head)
    with pytest.raises(RuntimeError, match="could not be loaded"):
        checkpoint.load(str(bad))


def test_errors(tiny_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(_cfg(tiny_root, tmp_path / "none", resume=True))
    with pytest.raises(ValueError, match="smaller than the patch"):
        train(_cfg(tiny_root, tmp_path / "big", patch_size=200))
    with pytest.raises(ValueError, match="more than"):
        train(_cfg(tiny_root, tmp_path / "many", n_sub=17))
    with pytest.raises(ValueError, match="unknown model"):
        train(_cfg(tiny_root, tmp_path / "m", model="resnet"))
    with pytest.raises(ValueError, match="n_noise:epochs"):
        train(_cfg(tiny_root, tmp_path / "cur", noise_curriculum="5"))


def test_stale_data_is_refused(tiny_root, tmp_path):
    # tiny_root holds 128x128 canvases with 3 stamps: asking for another task must not reuse them
    with pytest.raises(ValueError, match=r"does not match the configuration: size=\[128, 128\]"):
        train(_cfg(tiny_root, tmp_path / "s", size=(96, 96)))
    with pytest.raises(ValueError, match="binary_digit=None"):
        train(_cfg(tiny_root, tmp_path / "b", binary_digit=3))


def test_contrastive_on_binary_data(tmp_path):
    root = str(tmp_path / "bin")
    s = train(_cfg(root, tmp_path / "out", binary_digit=3, contrastive=True, noise_curriculum="", epochs=1))
    assert s["model_obj"].contrastive and s["model_obj"].head.out_features == 2
    from zoomkern.data.megapixel_mnist import MegapixelMNIST

    ds = MegapixelMNIST(root, "train")
    assert set(ds.labels.tolist()) == {0, 1} and ds.meta["binary_digit"] == 3
    with pytest.raises(ValueError, match="contrastive=True needs"):
        _cfg(root, tmp_path / "x", contrastive=True)  # a 10-class task
    with pytest.raises(ValueError, match="contrastive=True needs"):
        _cfg(root, tmp_path / "x", binary_digit=3, contrastive=True, model="ats")
    with pytest.raises(ValueError, match="binary_digit=12"):
        _cfg(root, tmp_path / "x", binary_digit=12)


def test_timm_backbone_and_tensorboard(tiny_root, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    s = train(_cfg(tiny_root, tmp_path / "t", timm_backbone="test_resnet", epochs=2, noise_curriculum=""))
    assert type(s["model_obj"].feature_net).__module__.startswith("timm")
    ev = EventAccumulator(str(tmp_path / "t" / "tb"))
    ev.Reload()
    assert {"train_loss", "test_acc", "train_peak_mb_per_sample"} <= set(ev.Tags()["scalars"])
    assert [e.step for e in ev.Scalars("test_acc")] == [0, 1]
    assert ev.Scalars("test_acc")[-1].value == pytest.approx(s["test_acc"])


def test_cli_presets():
    import train as cli

    demo = cli.parse(["--preset", "demo", "--n-tiles", "7", "--no-prior", "--size", "300"])
    assert demo.n_tiles == 7 and demo.prior is False and tuple(demo.size) == (300, 300)
    paper = cli.parse(["--preset", "paper", "--model", "ats"])
    assert tuple(paper.size) == (1500, 1500) and (paper.n_train, paper.n_test) == (5000, 1000)
    assert paper.n_patches == 10 and paper.n_tiles * paper.n_sub == 10 and paper.model == "ats"
    binary = cli.parse(["--preset", "demo", "--binary-digit", "3", "--contrastive"])
    assert binary.n_classes == 2 and binary.contrastive and binary.binary_digit == 3
