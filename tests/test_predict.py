"""train.py --dataset slides on real pyramidal TIFFs of two sizes, then predict.py on TIFF and PNG inputs."""

from __future__ import annotations

import csv
import os
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("tifffile")
pytest.importorskip("skimage")

from zoomkern.data import synthetic_slides as ss  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))

SMALL = ["--scale", "0.0625", "--tile-size", "128", "--s2", "0.25", "--sub-grid", "4", "4",
         "--patch-size", "32", "--n-tiles", "3", "--n-sub", "2", "--n-tiles-eval", "4",
         "--feature-widths", "4", "8", "--batch-size", "2", "--threads", "1", "--device", "cpu",
         "--no-amp", "--plot-images", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Four slides, two sizes (batches need padding), one epoch of Zoom-In through the CLI."""
    import train as cli

    root = tmp_path_factory.mktemp("wsi")
    sizes = [(900, 700), (900, 700), (600, 1000), (600, 1000)]
    for i, size in enumerate(sizes):
        ss.write_synthetic_slide(str(root / f"slide_{i}.tif"), size, positive=bool(i % 2), seed=i,
                                 min_level_size=128, progress=False)  # fmt: skip
    (root / "labels.csv").write_text("slide,label\n" + "".join(f"slide_{i},{i % 2}\n" for i in range(4)))
    out = root / "run"
    argv = ["--dataset", "slides", "--root", str(root), "--out", str(out), "--epochs", "1", *SMALL]
    assert cli.main(argv) == 0
    return root, out


def test_train_on_slides_writes_checkpoint_and_plot(run):
    root, out = run
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    cfg = state["config"]
    assert cfg["dataset"] == "slides" and cfg["in_channels"] == 3 and cfg["n_classes"] == 2
    assert os.path.getsize(out / "attention.png") > 10_000
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1 and 0.0 <= float(rows[0]["test_acc"]) <= 1.0


def test_predict_tiff_dir_and_png(run, tmp_path):
    import predict

    root, out = run
    png = tmp_path / "picture.png"
    import tifffile
    from PIL import Image

    Image.fromarray(tifffile.imread(root / "slide_1.tif", level=1)).save(png)  # a 450 x 350 RGB picture
    csv_path = tmp_path / "p.csv"
    plots = tmp_path / "plots"
    argv = ["--checkpoint", str(out / "checkpoint.pt"), str(root), str(png), "--csv", str(csv_path),
            "--plot", str(plots), "--threads", "1"]  # fmt: skip
    assert predict.main(argv) == 0
    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    names = [os.path.basename(r["image"]) for r in rows]
    assert names == [f"slide_{i}.tif" for i in range(4)] + ["picture.png"]
    for r in rows:
        p = np.array([float(r["p_0"]), float(r["p_1"])])
        assert abs(p.sum() - 1) < 1e-4 and int(r["predicted"]) == int(p.argmax()) and float(r["seconds"]) > 0
    assert sorted(os.listdir(plots)) == sorted(n.rsplit(".", 1)[0] + ".png" for n in names)


def test_predict_bad_inputs(run, tmp_path):
    import predict

    root, out = run
    grey = tmp_path / "grey.png"
    from PIL import Image

    Image.fromarray(np.zeros((300, 300), np.uint8)).save(grey)
    ck = str(out / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"grey\.png: 1 channel\(s\), but the model was trained on 3"):
        predict.main(["--checkpoint", ck, str(grey), "--csv", str(tmp_path / "x.csv")])
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        predict.main(
            ["--checkpoint", ck, str(tmp_path / "nothing_here.tif"), "--csv", str(tmp_path / "x.csv")]
        )
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        predict.main(["--checkpoint", str(tmp_path / "none.pt"), str(grey)])


def test_missing_slides_in_training_labels(run, tmp_path):
    import train as cli

    root, _ = run
    bad = tmp_path / "bad.csv"
    bad.write_text("slide_0,0\nslide_9,1\n")
    with pytest.raises(FileNotFoundError, match=rf"{bad}.*slide_9"):
        cli.main(["--dataset", "slides", "--root", str(root), "--labels", str(bad), "--out",
                  str(tmp_path / "r"), "--epochs", "1", *SMALL])  # fmt: skip
