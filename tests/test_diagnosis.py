"""The per-epoch patch diagnosis (issue 12, item 1): the data set's noise boxes are where the stamps
are, patches are classified by overlap, and training logs and plots the curves."""

import csv
import os
import shutil

import numpy as np
import pytest
import torch

from zoomkern.data.megapixel_mnist import MegapixelMNIST, make_megapixel_mnist, make_noise_patterns
from zoomkern.training import TrainConfig, train
from zoomkern.training.diagnosis import PatchStats


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("diag")
    make_megapixel_mnist(r, 8, 4, size=(128, 128), n_noise=3, scale=0.25, progress=False)
    return str(r)


def test_noise_boxes_hold_the_stamps(root):
    ds = MegapixelMNIST(root, "train")
    boxes = ds.noise_boxes()
    assert boxes.shape == (8, 3, 4)
    patterns = make_noise_patterns(np.random.default_rng([0, 99]))
    stamps = np.load(os.path.join(root, "train", "noise.npy"))
    for i in range(8):
        img = ds[i][0][0].numpy()
        for (y, x, k), (y0, x0, y1, x1) in zip(stamps[i], boxes[i], strict=True):
            # stamped with np.maximum: the image is at least the pattern over its 28 x 28 box
            assert (img[y : y + 28, x : x + 28] >= patterns[k]).all()
            assert y <= y0 < y1 <= y + 28 and x <= x0 < x1 <= x + 28 and img[y0:y1, x0:x1].max() > 0
    # a set written before noise.npy existed: recomputed from the seed, the same boxes
    os.remove(os.path.join(root, "train", "noise.npy"))
    np.testing.assert_array_equal(MegapixelMNIST(root, "train").noise_boxes(), boxes)


def test_patch_classification():
    class _DS:
        boxes = np.array([[[10, 10, 28, 28, 3]] * 5])  # five copies of one digit box at (10, 10)
        noise = np.array([[[80, 80, 90, 100]]])

        def noise_boxes(self):
            return self.noise

    s = PatchStats(_DS(), (8, 8))
    # on the digit's core (14..34), on its blank margin only (corner 2..10 ends at 10 < 14), on the noise
    offs = torch.tensor([[[20, 20], [2, 2], [85, 95], [50, 50]]])
    att = torch.full((1, 4, 4), 1 / 16)
    s.update(dict(patch_offsets=offs, attention=att, entropy1=torch.tensor([np.log(16)])), [0])
    r = PatchStats.result(s.counts(), "x")
    assert (r["x_patch_digit"], r["x_patch_noise"]) == (0.25, 0.25)
    assert r["x_entropy1"] == pytest.approx(1.0) and np.isnan(r["x_entropy2"])


def _script(name):
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "python", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("model", ["zoomin", "ats"])
def test_training_logs_and_plots_the_diagnosis(root, tmp_path, model, capsys):
    cfg = TrainConfig(root=root, size=(128, 128), n_train=8, n_test=4, n_noise=3, scale=0.25, model=model,
                      tile_size=64, s2=0.5, sub_grid=(4, 4), patch_size=24, n_tiles=3, n_sub=2, n_patches=4,
                      feature_widths=(4, 8), epochs=2, batch_size=4, out=str(tmp_path),
                      device="cpu", amp=False, eval_topk=True, plot_images=1)  # fmt: skip
    s = train(cfg)
    with open(s["csv"]) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("train_patch_digit", "train_patch_noise", "test_patch_digit", "test_patch_noise",
                  "train_entropy1", "test_entropy1"):  # fmt: skip
            assert 0.0 <= float(r[k]) <= 1.0, (k, r[k])
        assert (model == "ats") == np.isnan(float(r["train_entropy2"]))
    assert os.path.getsize(s["diagnosis_plot"]) > 1000
    # python/plot_runs.py draws the run's curve; a label without a path is refused by name
    curves = _script("plot_runs")
    assert curves.main([f"run={s['csv']}", "--png", str(tmp_path / "c.png")]) == 0
    assert os.path.getsize(tmp_path / "c.png") > 1000
    with pytest.raises(SystemExit):
        curves.main(["run", "--png", str(tmp_path / "d.png")])
    assert "LABEL=path" in capsys.readouterr().err
    # python/diagnose.py on the checkpoint: one table row per evaluation setting, rates in range
    mod = _script("diagnose")
    zoomin_flags = ["--n-tiles-eval", "2", "4", "--n-sub-eval", "1"]
    flags = zoomin_flags if model == "zoomin" else ["--n-patches-eval", "2", "6"]
    assert mod.main(["--checkpoint", s["checkpoint"], *flags]) == 0
    rows = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "%" not in line
    ]
    assert len(rows) == 2, rows
    for line in rows:
        cells = line.strip("|").split("|")
        acc = float(cells[2])
        assert 0 <= acc <= 100 and (cells[3].strip() == "-") == (model == "ats")


def test_object_patch_classification():
    from zoomkern.training.diagnosis import ObjectStats, stats_class

    class _DS:  # image 0 holds a sign at rows 100..140, cols 200..240; image 1 is EMPTY
        def object_boxes(self, i):
            return np.array([[100, 200, 140, 240]]) if i == 0 else np.zeros((0, 4), np.int64)

    assert stats_class(_DS()) is ObjectStats and stats_class(object()) is None
    s = ObjectStats(_DS(), (50, 50))
    # image 0: one patch overlapping the sign's corner (139, 239), one just clear of it (ends at 100);
    # image 1: two patches, nothing to hit
    offs = torch.tensor([[[139, 239], [50, 150]], [[100, 200], [0, 0]]])
    att = torch.full((2, 4, 4), 1 / 16)
    s.update(dict(patch_offsets=offs, attention=att, entropy1=torch.full((2,), np.log(16))), [0, 1])
    r = ObjectStats.result(s.counts(), "x")
    assert len(s.counts()) == ObjectStats.N_COUNTS
    assert (r["x_patch_object"], r["x_image_object"]) == (0.25, 1.0)
    assert r["x_entropy1"] == pytest.approx(1.0) and np.isnan(r["x_entropy2"])


def test_digit_recall():
    from zoomkern.training.diagnosis import DigitRecall

    class _DS:  # one image, label 3: three 3s and two 7s, in a row along y = 0
        boxes = np.array([[[0, 0, 28, 28, 3], [0, 100, 28, 28, 3], [0, 200, 28, 28, 3],
                           [0, 300, 28, 28, 7], [0, 400, 28, 28, 7]]])  # fmt: skip
        labels = np.array([3])

    s = DigitRecall(_DS(), (8, 8), tile_size=(50, 150))
    # the tile at x = 0 holds the digits at x = 0 and 100 (cores 4..24, 104..124) but not the one at 200;
    # patches touch the 3 at x = 100, the 7 at x = 300, and the blank margin of the 3 at x = 200 (x 190..198)
    out = dict(
        patch_offsets=torch.tensor([[[10, 110], [10, 310], [10, 190], [10, 310]]]),
        patch_valid=torch.tensor([[True, True, True, False]]),
        tile_offsets=torch.tensor([[[0, 0]]]),
    )
    s.update(out, [0], [False])
    r = s.result()
    assert r["digit_in_tile"] == pytest.approx(2 / 5) and r["digit_hit"] == pytest.approx(2 / 5)
    assert r["target_hits"] == [0.0, 1.0, 0.0, 0.0] and r["acc"] == 0.0
    assert r["acc_given_hits"][1] == 0.0 and np.isnan(r["acc_given_hits"][3])
    # the invalid slot (a repeated offset) does not count: moving it onto the 3 at x = 0 changes nothing
    out["patch_offsets"][0, 3] = torch.tensor([10, 10])
    s2 = DigitRecall(_DS(), (8, 8))
    s2.update(out, [0], [True])
    assert s2.result()["digit_hit"] == pytest.approx(2 / 5) and np.isnan(s2.result()["digit_in_tile"])


def test_stage1_probe(root, capsys):
    probe = _script("probe_stage1")
    boxes = np.array([[[0, 0, 28, 28, 1], [40, 70, 28, 28, 2]]])  # centres (14, 14) and (54, 84)
    lab = probe.tile_labels(boxes, (128, 128), 32)
    assert lab.shape == (1, 4, 4) and lab.sum() == 2 and lab[0, 0, 0] == 1 and lab[0, 1, 2] == 1
    logits = torch.arange(16.0).reshape(1, 4, 4)  # ranks tile (1, 2) 10th from the top, (0, 0) last
    labels = torch.from_numpy(lab)
    assert probe.recall_at(logits, labels, 9) == 0.0 and probe.recall_at(logits, labels, 10) == 0.5
    assert probe.recall_at(logits, labels, 16) == 1.0
    assert probe.recall_at(logits, labels, 99) == 1.0  # k past the grid: every tile
    assert probe.main(["--root", root, "--scale", "0.25", "--tile-size", "32", "--epochs", "1"]) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| 0.25 |")]
    assert len(rows) == 1 and all(0 <= float(v) <= 100 for v in rows[0].split("|")[3].split("/"))


def test_stage1_probe_scores_a_checkpoint_without_training(root, tmp_path, capsys):
    # --epochs 0 only scores the checkpoints, without the training split. A stage I frozen at the
    # ink prior (attention1_lr_mult=0) must rank the tiles exactly as the prior does.
    cfg = TrainConfig(root=root, size=(128, 128), n_train=8, n_test=4, n_noise=3, scale=0.25, tile_size=32,
                      s2=0.5, sub_grid=(4, 4), patch_size=12, n_tiles=3, n_sub=2, feature_widths=(4, 8),
                      epochs=1, batch_size=4, out=str(tmp_path), device="cpu", amp=False, prior=True,
                      attention1_lr_mult=0.0, plot_images=0)  # fmt: skip
    ckpt = train(cfg)["checkpoint"]
    only_test = tmp_path / "only_test"  # the probe must not need the training split
    shutil.copytree(root, only_test, ignore=lambda d, names: ["train"] if d == root else [])
    probe = _script("probe_stage1")
    args = ["--root", str(only_test), "--scale", "0.25", "--tile-size", "32", "--epochs", "0"]
    args += ["--checkpoint", ckpt]
    assert probe.main(args) == 0
    rows = [r.split("|") for r in capsys.readouterr().out.splitlines() if r.startswith("| 0.25 |")]
    assert len(rows) == 1 and "trained end to end" in rows[0][2]  # no probe epochs ran
    for col in rows[0][3:5]:  # top-5 and top-16 recall: prior / checkpoint's stage I
        prior, stage1 = col.split("/")
        assert float(prior) == float(stage1) and 0 < float(prior) <= 100


def test_target_tiles_mass_against_uniform_and_the_teachers_picks():
    """Stage I's mass on the tiles holding the label's digits, the uniform share, the teacher's hits."""
    from zoomkern.training.diagnosis import TargetTiles

    class _DS:
        # canvas 100 x 100 on a 2 x 2 grid: label 3's digits centred in cells 0 and 3, a 7 in cell 1
        boxes = np.array([[[10, 10, 28, 28, 3], [60, 60, 28, 28, 3], [10, 60, 28, 28, 7]]])
        labels = np.array([3])
        meta = {"size": [100, 100]}

    t = TargetTiles(_DS())
    att = torch.tensor([[[0.5, 0.3], [0.1, 0.1]]])
    t.update(dict(attention=att, teacher_cells=torch.tensor([[0, 1]])), [0])
    r = TargetTiles.result(t.counts(), "x")
    assert r["x_attn1_target"] == pytest.approx(0.6) and r["x_attn1_uniform"] == pytest.approx(0.5)
    assert r["x_teacher_target"] == pytest.approx(0.5) and r["x_teacher_uniform"] == pytest.approx(0.5)


def test_dead_units_counts_units_that_never_fire():
    from zoomkern.models import AttentionNet, ZoomIn
    from zoomkern.training.diagnosis import DeadUnits

    torch.manual_seed(0)
    m = ZoomIn(10, 1, tile_size=16, s2=0.5, patch_size=6, attention1=AttentionNet(1, depth=2))
    first = m.attention1.net[0]
    with torch.no_grad():
        first.bias[:3] = -1e3  # 3 of the 8 first-layer units can never fire
    d = DeadUnits(m)
    m.attention1(torch.rand(2, 1, 20, 20))
    m.attention2(torch.rand(2, 1, 20, 20))
    d.detach()
    r = DeadUnits.result(d.counts(), "x")
    assert r["x_dead1"] == pytest.approx(3 / 8)  # one hidden layer of 8 units
    assert r["x_dead2"] == pytest.approx(0.0)
    m.attention1(torch.rand(2, 1, 20, 20))  # detached: no more counting
    assert DeadUnits.result(d.counts(), "x") == r
