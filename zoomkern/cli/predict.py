"""Apply a trained model to new images and write class probabilities (and attention pictures).

    zoomkern predict --checkpoint runs/slides/checkpoint.pt /data/slides/ --csv preds.csv
    zoomkern predict --checkpoint runs/demo/checkpoint.pt a.png b.tif --plot plots/

The model is rebuilt from the configuration stored in the checkpoint. Inputs are files of any format
zk.io opens (tiled/pyramidal TIFF, OpenSlide formats, .npy, .png/.jpg/.bmp) or directories of them; each
image is read only where the model looks. Writes a CSV ``image,predicted,p_0,...,seconds``.
"""

from __future__ import annotations

import argparse

from ._common import deprecated, parser, resolve_device


def main(argv=None, prog=None) -> int:
    p = parser(prog, __doc__)
    p.add_argument("--checkpoint", required=True, metavar="FILE", help="RUN/checkpoint.pt of zoomkern train")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="images, or folders of images")
    p.add_argument("--csv", default="predictions.csv", metavar="FILE", help="CSV of class probabilities")
    deprecated(p, "--out", "--csv")  # --out names a folder in every other command
    p.add_argument("--plot", metavar="DIR", help="write an attention overlay per image into DIR")
    p.add_argument("--tissue-mask", action=argparse.BooleanOptionalAction, default=None,
                   help="stage I on tissue only (default: if the model was trained on slides)")  # fmt: skip
    p.add_argument("--device", default="auto", help="auto (CUDA when there is one, as training), cpu, cuda:N")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0, help="for models that sample patches at evaluation")
    a = p.parse_args(argv)

    import torch

    from ..training.predict import expand_inputs, load_model, predict_paths

    device = resolve_device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model, cfg = load_model(a.checkpoint, device)
    paths = expand_inputs(a.inputs)
    rows = predict_paths(model, cfg, paths, out_csv=a.csv, plot_dir=a.plot, tissue=a.tissue_mask,
                         device=device)  # fmt: skip
    secs = sum(r["seconds"] for r in rows)
    print(f"{len(rows)} image(s), {secs / max(len(rows), 1):.2f} s/image; probabilities: {a.csv}"
          + (f"; attention pictures: {a.plot}" if a.plot else ""))  # fmt: skip
    return 0
