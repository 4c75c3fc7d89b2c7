"""The colon-cancer loader on fixtures in both real layouts: BMP files with fold CSVs, and the
CRCHistoPhenotypes download (Classification/imgN/imgN.bmp + imgN_epithelial.mat written by scipy)."""

import re

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from zoomkern.data import ColonCancer, DataError
from zoomkern.data.colon import csv_folds, fold_numbers


def _pixels(seed):
    # distinct per-channel ranges, so that a BGR read or a transposed read cannot pass
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (500, 500, 3), dtype=np.uint8)
    a[..., 0] |= 0x80
    a[..., 2] &= 0x7F
    return a


def _csv_layout(root, n=6, folds=2):
    labels = [i % 2 for i in range(n)]
    for i in range(n):
        Image.fromarray(_pixels(i)).save(root / f"img{i + 1}.bmp")
    for k in range(1, folds + 1):
        va = [i for i in range(n) if i % folds == k - 1]
        tr = [i for i in range(n) if i not in va]
        for split, idx in (("train", tr), ("valid", va)):
            # CRLF line ends and a trailing blank line, as files edited on Windows have
            text = "".join(f"img{i + 1}.bmp,{labels[i]}\r\n" for i in idx) + "\r\n"
            (root / f"labels_histo_{split}_fold_{k}.csv").write_bytes(text.encode())
    return labels


def _download_layout(root, counts):
    for i, c in enumerate(counts):
        d = root / "Classification" / f"img{i + 1}"
        d.mkdir(parents=True)
        Image.fromarray(_pixels(100 + i)).save(d / f"img{i + 1}.bmp")
        det = np.random.default_rng(i).uniform(0, 500, (c, 2)) if c else np.zeros((0, 0))
        scipy.io.savemat(d / f"img{i + 1}_epithelial.mat", {"detection": det})


def test_csv_layout_reads_exact_rgb_pixels(tmp_path):
    labels = _csv_layout(tmp_path)
    assert csv_folds(tmp_path) == [1, 2]
    ds = ColonCancer(tmp_path, fold=2, split="valid")
    assert ds.layout == "csv" and len(ds) == 3 and ds.classes == ["negative", "positive"]
    assert [p.rsplit("/", 1)[1] for p in ds.paths] == ["img2.bmp", "img4.bmp", "img6.bmp"]
    assert ds.labels.tolist() == [labels[1], labels[3], labels[5]]
    img, low, y = ds[0]
    assert img.dtype == torch.uint8 and img.shape == (3, 500, 500) and low.shape == (3, 50, 50)
    np.testing.assert_array_equal(img.permute(1, 2, 0).numpy(), _pixels(1))
    # the low-resolution view is the 10x10 block mean of the pixels, rounded
    want = _pixels(1).reshape(50, 10, 50, 10, 3).mean((1, 3))
    assert np.abs(low.permute(1, 2, 0).numpy().astype(float) - want).max() <= 0.5 + 1e-6
    assert y == labels[1]
    tr = ColonCancer(tmp_path, fold=2, split="train")
    assert sorted(tr.paths + ds.paths) == sorted(str(tmp_path / f"img{i}.bmp") for i in range(1, 7))


def test_download_layout_labels_and_stratified_folds(tmp_path):
    counts = [0, 3, 0, 1, 0, 7, 0, 2, 0, 0, 5, 0]
    _download_layout(tmp_path, counts)
    want = {str(tmp_path / "Classification" / f"img{i + 1}" / f"img{i + 1}.bmp"): int(c > 0)
            for i, c in enumerate(counts)}  # fmt: skip
    seen = []
    for k in (1, 2, 3):
        va = ColonCancer(tmp_path, fold=k, split="valid", folds=3)
        tr = ColonCancer(tmp_path, fold=k, split="train", folds=3)
        assert va.layout == "download" and va.n_folds == 3
        assert set(va.paths).isdisjoint(tr.paths) and len(va) + len(tr) == 12
        # stratified: 5 positives and 7 negatives over 3 folds -> per fold 1-2 positives, 2-3 negatives
        assert va.labels.sum() in (1, 2) and (va.labels == 0).sum() in (2, 3)
        assert all(want[p] == y for p, y in zip(va.paths, va.labels, strict=True))
        seen += va.paths
    assert sorted(seen) == sorted(want)  # the validation folds partition the set
    again = ColonCancer(tmp_path, fold=2, split="valid", folds=3)
    assert again.paths == ColonCancer(tmp_path, fold=2, split="valid", folds=3).paths  # deterministic
    img, _, _ = again[0]
    i = int(again.paths[0].rsplit("img", 1)[1].split(".")[0]) - 1
    np.testing.assert_array_equal(img.permute(1, 2, 0).numpy(), _pixels(100 + i))
    assert fold_numbers(tmp_path, 3) == [1, 2, 3]


def test_csv_rows_may_name_images_of_the_download_layout(tmp_path):
    _download_layout(tmp_path, [1, 0, 4, 0])
    for split, rows in (("train", "img1.bmp,1\nimg2.bmp,0\n"), ("valid", "img3.bmp,1\nimg4.bmp,0\n")):
        (tmp_path / f"labels_histo_{split}_fold_1.csv").write_text(rows)
    ds = ColonCancer(tmp_path, fold=1, split="valid")
    assert ds.layout == "csv" and ds.labels.tolist() == [1, 0]
    assert ds.paths[0].endswith("Classification/img3/img3.bmp")


def test_bad_input_names_the_file(tmp_path):
    _csv_layout(tmp_path)
    with pytest.raises(ValueError, match=r"fold 3 does not exist .*\[1, 2\]"):
        ColonCancer(tmp_path, fold=3)
    with pytest.raises(ValueError, match="split='test'"):
        ColonCancer(tmp_path, fold=1, split="test")
    f = tmp_path / "labels_histo_train_fold_1.csv"
    f.write_text("img2.bmp,1\nimg9.bmp,0\n")
    with pytest.raises(
        DataError, match=r"labels_histo_train_fold_1\.csv:2: names img9\.bmp, which is missing"
    ):
        ColonCancer(tmp_path, fold=1)
    f.write_text("img2.bmp,1\nimg4.bmp,yes\n")
    with pytest.raises(DataError, match=r"fold_1\.csv:2: malformed label 'yes'"):
        ColonCancer(tmp_path, fold=1)
    f.write_text("img2.bmp;1\n")
    with pytest.raises(DataError, match=r"fold_1\.csv:1: expected 'imgN\.bmp,label'"):
        ColonCancer(tmp_path, fold=1)
    f.write_text("img2.bmp,2\n")
    with pytest.raises(DataError, match="malformed label '2'"):
        ColonCancer(tmp_path, fold=1)
    (tmp_path / "img4.bmp").write_bytes(b"BM not really a bitmap")
    (tmp_path / "labels_histo_valid_fold_1.csv").write_text("img4.bmp,1\n")
    ds = ColonCancer(tmp_path, fold=1, split="valid")
    with pytest.raises(DataError, match=r"img4\.bmp: not a readable image"):
        ds[0]
    Image.fromarray(np.zeros((400, 500, 3), np.uint8)).save(tmp_path / "img4.bmp")
    with pytest.raises(DataError, match=r"img4\.bmp: image is 400x500, expected 500x500"):
        ColonCancer(tmp_path, fold=1, split="valid")[0]


def test_download_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no colon-cancer data"):
        ColonCancer(tmp_path)
    _download_layout(tmp_path, [1, 0, 2, 0])
    with pytest.raises(ValueError, match=r"fold 5 does not exist: the stratified folds are 1\.\.2"):
        ColonCancer(tmp_path, fold=5, folds=2)
    mat = tmp_path / "Classification" / "img2" / "img2_epithelial.mat"
    scipy.io.savemat(mat, {"centres": np.zeros((2, 2))})
    with pytest.raises(DataError, match=r"img2_epithelial\.mat: no 'detection' array"):
        ColonCancer(tmp_path, folds=2)
    mat.write_bytes(b"MATLAB 5.0 MAT-file truncated")
    with pytest.raises(DataError, match=r"img2_epithelial\.mat: not a readable \.mat file"):
        ColonCancer(tmp_path, folds=2)
    mat.unlink()
    with pytest.raises(DataError, match=r"img2_epithelial\.mat: annotation file missing"):
        ColonCancer(tmp_path, folds=2)


def test_dihedral_augmentation_is_a_pixel_permutation(tmp_path):
    from zoomkern.data._image import lowres_view
    from zoomkern.data.augment import Dihedral

    _csv_layout(tmp_path, n=2, folds=2)
    ds = ColonCancer(tmp_path, fold=1, split="train", transform=Dihedral())
    ref = torch.from_numpy(_pixels(1)).permute(2, 0, 1)
    torch.manual_seed(0)
    seen = set()
    for _ in range(40):
        img, low, _ = ds[0]
        assert torch.equal(img.flatten(1).sort(1).values, ref.flatten(1).sort(1).values)
        assert torch.equal(low, lowres_view(img, 0.1))  # the low view shows the augmented image
        seen.add(tuple(img[:, :2, :2].flatten().tolist()))
    assert len(seen) == 8  # all eight symmetries come up (seeded; 40 random draws miss one with p ~ 0.04)


def test_scan_reports_every_bad_file(tmp_path, capsys):
    from zoomkern.data.scan import main

    _csv_layout(tmp_path)
    assert main(["--dataset", "colon", "--root", str(tmp_path)]) == 0
    assert "6 images, no problems" in capsys.readouterr().out
    (tmp_path / "labels_histo_train_fold_1.csv").write_text("img2.bmp,1\nimg9.bmp,0\nimg4.bmp,maybe\n")
    (tmp_path / "labels_histo_valid_fold_2.csv").write_text("img1.bmp,0\nimg4.bmp,1\n")  # img1: both splits
    (tmp_path / "labels_histo_train_fold_3.csv").write_text("img1.bmp,0\n")  # no valid file for fold 3
    (tmp_path / "img5.bmp").write_bytes(b"BM truncated")
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tmp_path / "img3.bmp")
    assert main(["--dataset", "colon", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    want = [
        r"train_fold_1\.csv:2: names img9\.bmp, which is missing",
        r"train_fold_1\.csv:3: malformed label",
        r"labels_histo_valid_fold_3\.csv: missing",
        r"fold 2 has 1 images in both train and valid",
        r"img5\.bmp: not a readable image",
        r"img3\.bmp: image is 10x10, expected 500x500",
    ]

    for w in want:
        assert sum(bool(re.search(w, line)) for line in out) == 1, (w, out)
    assert len(out) == len(want)


def test_scan_download_layout(tmp_path, capsys):
    from zoomkern.data.scan import main

    _download_layout(tmp_path, [1, 0, 2])
    (tmp_path / "Classification" / "img1" / "img1_epithelial.mat").unlink()
    (tmp_path / "Classification" / "img3" / "img3_epithelial.mat").write_bytes(b"junk")
    assert main(["--dataset", "colon", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert (
        "img1_epithelial.mat: annotation file missing" in out and "img3_epithelial.mat: not a readable" in out
    )


def test_generated_set_in_both_layouts(tmp_path):
    from zoomkern.data.colon_like import make_colon_like

    make_colon_like(tmp_path / "a", 10, folds=5, progress=False)
    make_colon_like(tmp_path / "b", 10, folds=5, layout="download", progress=False)
    a = [ColonCancer(tmp_path / "a", fold=k, split="valid") for k in range(1, 6)]
    b = [ColonCancer(tmp_path / "b", fold=k, split="valid", folds=5) for k in range(1, 6)]
    assert a[0].n_folds == 5 and sum(len(d) for d in a) == 10
    # same seed, same images and labels: the .mat detections give the labels the CSVs state
    name = lambda p: p.rsplit("/", 1)[1]  # noqa: E731
    la = {name(p): y for d in a for p, y in zip(d.paths, d.labels, strict=True)}
    lb = {name(p): y for d in b for p, y in zip(d.paths, d.labels, strict=True)}
    assert la == lb and sum(la.values()) == 5
    torch.testing.assert_close(a[0][0][0], ColonCancer(tmp_path / "b", fold=1, split="valid", folds=5)[0][0])


def test_sparse_objects_and_their_boxes_for_the_patch_diagnosis(tmp_path):
    """objects="sparse": positives hold 1-3 lone dark objects, negatives none; in the download layout
    (and without flips or rotations) the data set gives their boxes, centred on the .mat centres, where
    the objects' dark pixels are."""
    from zoomkern.data.augment import Dihedral
    from zoomkern.data.colon_like import make_colon_like
    from zoomkern.training.diagnosis import ObjectStats

    make_colon_like(tmp_path, 12, folds=3, layout="download", objects="sparse", progress=False)
    ds = ColonCancer(tmp_path, fold=1, split="train", folds=3)
    assert ObjectStats.supports(ds)
    for i in range(len(ds)):
        boxes = ds.object_boxes(i)
        assert (boxes.shape[0] >= 1) == bool(ds.labels[i]) and boxes.shape[0] <= 3
        img = ds[i][0].float()
        for y0, x0, y1, x1 in boxes.tolist():
            # the object's dark core (70, 30, 110) against pink tissue and pale nuclei (150, 90, 175)
            assert float(img[1, max(0, y0) : y1, max(0, x0) : x1].min()) < 60
    flipped = ColonCancer(tmp_path, fold=1, split="train", folds=3, transform=Dihedral())
    assert not ObjectStats.supports(flipped)
    with pytest.raises(ValueError, match="objects"):
        make_colon_like(tmp_path / "x", 4, folds=2, objects="few", progress=False)
