"""The Swedish traffic-sign loader on fixtures in the real layout: Set1/ and Set2/ with JPEG images and
annotations.txt files carrying the real files' quirks (stray characters in numbers, CRLF, empty lines)."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from zoomkern.data import DataError, TrafficSigns
from zoomkern.data.traffic_signs import label_of, parse_annotations, parse_number, parse_sign

V = "VISIBLE"
LINES = [
    "a.jpg:",  # empty annotation -> EMPTY
    "b.jpg:MISC_SIGNS;",  # only MISC_SIGNS -> EMPTY
    # two visible limits: the larger box wins (70: 40x40 beats 50: 20x20); first corner is the lower right
    f"c.jpg:{V}, 120.0, 120.0, 100.0, 100.0, SPEED_LIMIT, 50_SIGN;{V}, 482.26l, 340.5, 442.26, 300.5, "
    "SPEED_LIMIT, 70_SIGN",
    # a blurred 80 bigger than a visible 50: visibility first -> 50
    "d.jpg:BLURRED, 900, 900, 700, 700, SPEED_LIMIT, 80_SIGN;VISIBLE, 30, 30, 10, 10, SPEED_LIMIT, 50_SIGN;",
    "e.jpg:OCCLUDED, 100, 100, 50, 50, SPEED_LIMIT, 80_SIGN",  # first not VISIBLE -> dropped
    "f.jpg:VISIBLE, 100, 100, 50, 50, PRIORITY_ROAD, PRIORITY_ROAD",  # no speed limit left -> dropped
    # the 30 is not one of the kept limits, so the visible 80 comes first even though it is listed later
    "g.jpg:MISC_SIGNS;SIDE_ROAD, 10, 10, 5, 5, SPEED_LIMIT, 30_SIGN;VISIBLE, 5, 5, 60, 60, SPEED_LIMIT, "
    "80_SIGN",
]
WANT = {"a.jpg": 0, "b.jpg": 0, "c.jpg": 2, "d.jpg": 1, "g.jpg": 3}


def _jpeg(path, rgb, size=(960, 1280)):
    a = np.zeros((*size, 3), np.uint8)
    a[...] = rgb
    a[: size[0] // 2, : size[1] // 2] = 255 - np.asarray(rgb)
    Image.fromarray(a).save(path, quality=95)


@pytest.fixture(scope="module")
def sts_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sts")
    for s, sub in (("Set1", "Set1Part0"), ("Set2", "")):
        d = root / s / sub
        d.mkdir(parents=True, exist_ok=True)
        for i, line in enumerate(LINES):
            _jpeg(d / line.split(":")[0], (200, 30 + 10 * i, 10))
        # CRLF line ends and blank lines, as in the download
        (root / s / "annotations.txt").write_bytes(("\r\n".join(LINES) + "\r\n\r\n").encode())
    return root


def test_filter_labels_and_rgb_pixels(sts_root):
    ds = TrafficSigns(sts_root, "train")
    assert ds.classes == ["EMPTY", "50_SIGN", "70_SIGN", "80_SIGN"]
    got = {p.rsplit("/", 1)[1]: int(y) for p, y in zip(ds.paths, ds.labels, strict=True)}
    assert got == WANT and ds.n_dropped == 2
    assert all("/Set1/Set1Part0/" in p for p in ds.paths)
    img, low, y = ds[2]
    assert img.shape == (3, 960, 1280) and img.dtype == torch.uint8 and low.shape == (3, 240, 320)
    with Image.open(ds.paths[2]) as im:
        np.testing.assert_array_equal(img.permute(1, 2, 0).numpy(), np.asarray(im.convert("RGB")))
    # R, G, B order (not BGR): the fixture is red-dominant outside its top-left quarter
    assert img[0, -1, -1] > 180 and img[2, -1, -1] < 40
    te = TrafficSigns(sts_root, "test")
    assert sorted(te.paths) == sorted(str(sts_root / "Set2" / n) for n in WANT)


def test_signs_and_numbers():
    assert parse_number("482.26l") == 482.26 and parse_number(" 12 ") == 12.0 and parse_number("7.") == 7.0
    for bad in ("", "abc", "12.5xy", "l12"):
        with pytest.raises(ValueError, match="not a number"):
            parse_number(bad)
    s = parse_sign("VISIBLE, 482.26l, 340.5, 442.26, 300.5, SPEED_LIMIT, 70_SIGN")
    assert s.box == (442.26, 300.5, 482.26, 340.5) and s.area == pytest.approx(40 * 40)
    # the area does not depend on which corner comes first
    assert parse_sign("VISIBLE, 442.26, 300.5, 482.26, 340.5, SPEED_LIMIT, 70_SIGN") == s
    assert parse_sign("MISC_SIGNS") is None
    assert label_of([]) == 0
    # ties in visibility and area keep the file's order
    a, b = (parse_sign(f"VISIBLE, 0, 0, 10, 10, SPEED_LIMIT, {n}_SIGN") for n in (80, 50))
    assert label_of([a, b]) == 3 and label_of([b, a]) == 1


def test_bad_annotation_lines_name_file_and_line(sts_root, tmp_path):
    (tmp_path / "Set1").mkdir()
    ann = tmp_path / "Set1" / "annotations.txt"
    _jpeg(tmp_path / "Set1" / "a.jpg", (0, 0, 0), size=(96, 128))
    cases = {
        "a.jpg:VISIBLE, 1, 2, 3, SPEED_LIMIT, 50_SIGN": r"annotations\.txt:2: sign .*7 fields",
        "a.jpg:SEEN, 1, 2, 3, 4, SPEED_LIMIT, 50_SIGN": r"annotations\.txt:2: .*visibility 'SEEN'",
        "a.jpg:VISIBLE, 1, 2x9, 3, 4, SPEED_LIMIT, 50_SIGN": r"annotations\.txt:2: not a number: '2x9'",
        "no colon here": r"annotations\.txt:2: expected 'NAME\.jpg:SIGN;SIGN;\.\.\.'",
        "zz.jpg:": r"annotations\.txt:2: names zz\.jpg, which is missing",
    }
    for line, msg in cases.items():
        ann.write_text(f"a.jpg:\n{line}\n")
        with pytest.raises(DataError, match=msg):
            TrafficSigns(tmp_path, "train", size=None)
    errors = []
    ann.write_text("".join(f"{line}\n" for line in cases))
    parse_annotations(ann, errors)
    assert len(errors) == 4  # every unparseable line reported, not only the first
    with pytest.raises(FileNotFoundError, match=r"Set2/annotations\.txt: annotation file missing"):
        TrafficSigns(tmp_path, "test")
    with pytest.raises(ValueError, match="split='valid'"):
        TrafficSigns(sts_root, "valid")
    ann.write_text("a.jpg:\n")
    with pytest.raises(DataError, match=r"a\.jpg: image is 96x128, expected 960x1280"):
        TrafficSigns(tmp_path, "train")[0]


def test_generated_set_reads_back(tmp_path):
    from zoomkern.data.traffic_like import make_traffic_like

    make_traffic_like(tmp_path, 8, 4, empty_share=0.25, progress=False)
    for split, n in (("train", 8), ("test", 4)):
        ds = TrafficSigns(tmp_path, split)
        assert len(ds) == n and ds.n_dropped == 0
        assert (ds.labels == 0).sum() == round(0.25 * n) and set(ds.labels.tolist()) <= {0, 1, 2, 3}
        for i, (signs, y) in enumerate(zip(ds.signs, ds.labels, strict=True)):
            assert len(signs) == int(y > 0) and (not signs or signs[0].name == ds.classes[y])
            boxes = ds.object_boxes(i)
            assert boxes.shape == (int(y > 0), 4) and boxes.dtype == np.int64
            if not y:
                continue
            # a sign of realistic size (30-72 px across): a red ring around a white disc, in its box
            y0, x0, y1, x1 = boxes[0]
            assert 30 <= x1 - x0 <= 74 and 30 <= y1 - y0 <= 74
            crop = ds[i][0][:, y0:y1, x0:x1].numpy().astype(int)
            red = (crop[0] > 150) & (crop[1] < 90) & (crop[2] < 90)
            white = crop.min(0) > 200
            assert red.mean() > 0.15 and white.mean() > 0.15, (red.mean(), white.mean())


def test_scan_reports_every_bad_line(tmp_path, capsys):
    from zoomkern.data.scan import main

    (tmp_path / "Set1").mkdir()
    _jpeg(tmp_path / "Set1" / "a.jpg", (0, 0, 0))
    _jpeg(tmp_path / "Set1" / "b.jpg", (0, 0, 0), size=(10, 10))
    lines = [
        "a.jpg:",
        "b.jpg:",
        "c.jpg:",
        "a.jpg:VISIBLE, 1, 2",
        "a.jpg:FOGGY, 1, 2, 3, 4, SPEED_LIMIT, 50_SIGN",
    ]
    (tmp_path / "Set1" / "annotations.txt").write_text("\n".join(lines))
    assert main(["--dataset", "traffic_signs", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    wants = [
        "annotations.txt:3: names c.jpg, which is missing",
        "annotations.txt:4: sign",
        "annotations.txt:5: sign",
        "b.jpg: image is 10x10",
        "Set2/annotations.txt: annotation file missing",
    ]
    for want in wants:
        assert want in out, (want, out)
    assert len(out.splitlines()) == 5


def test_preset_trains_and_logs_sign_hits(tmp_path):
    """The traffic_signs preset (shrunk: 2 tile draws x 2 sub-cells, 1 epoch) trains on a generated set
    and logs per epoch which share of its patches landed on a sign box."""
    import csv

    from zoomkern.data.traffic_like import make_traffic_like
    from zoomkern.training import PRESETS, TrainConfig, train

    make_traffic_like(tmp_path / "d", 4, 2, progress=False)
    cfg = TrainConfig(**{**PRESETS["traffic_signs"], "root": str(tmp_path / "d"), "out": str(tmp_path / "r"),
                         "n_tiles": 2, "n_sub": 2, "n_tiles_eval": 2, "n_sub_eval": 2, "epochs": 1,
                         "batch_size": 4, "device": "cpu", "plot_images": 1})  # fmt: skip
    s = train(cfg)
    with open(s["csv"]) as f:
        (row,) = list(csv.DictReader(f))
    for k in ("train_patch_object", "train_image_object", "test_patch_object", "test_image_object"):
        assert 0.0 <= float(row[k]) <= 1.0, (k, row[k])
    assert "train_patch_digit" not in row
    assert os.path.getsize(s["diagnosis_plot"]) > 1000  # the object shares and entropies per epoch


def test_stratified_folds_over_set1(tmp_path):
    """--folds K on traffic signs: Set1 split into K stratified folds; fold k's 'valid' part is the
    held-out test set, its 'train' part the rest; the K held-out parts partition Set1."""
    from zoomkern.data.traffic_like import make_traffic_like
    from zoomkern.training import TrainConfig
    from zoomkern.training.kfold import fold_numbers
    from zoomkern.training.registry import build

    make_traffic_like(tmp_path, 12, 1, progress=False)  # labels 0 x3, then 1, 2, 3 three times each
    full = TrafficSigns(tmp_path, "train")
    held = []
    for k in (1, 2, 3):
        spec = build(TrainConfig(dataset="traffic_signs", root=str(tmp_path), folds=3, fold=k, augment=True))
        tr, va = spec.train, spec.test
        assert set(tr.paths).isdisjoint(va.paths) and sorted(tr.paths + va.paths) == sorted(full.paths)
        assert sorted(va.labels.tolist()) == [0, 1, 2, 3] and va.transform is None and tr.transform
        assert all(s == full.signs[full.paths.index(p)] for p, s in zip(va.paths, va.signs, strict=True))
        held += va.paths
    assert sorted(held) == sorted(full.paths)
    assert fold_numbers(TrainConfig(dataset="traffic_signs", root=str(tmp_path), folds=3)) == [1, 2, 3]
    with pytest.raises(ValueError, match="split='valid' needs a fold"):
        TrafficSigns(tmp_path, "valid")
    with pytest.raises(ValueError, match="fold=4: folds are numbered 1..3"):
        TrafficSigns(tmp_path, "valid", fold=4, folds=3)
