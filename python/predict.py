"""Apply a trained model to new images and write class probabilities (and attention pictures).

    python python/predict.py --checkpoint runs/slides/checkpoint.pt /data/slides/ --out preds.csv
    python python/predict.py --checkpoint runs/demo/checkpoint.pt a.png b.tif --plot plots/

The model is rebuilt from the configuration stored in the checkpoint. Inputs are files of any format
zk.io opens (tiled/pyramidal TIFF, OpenSlide formats, .npy, .png/.jpg/.bmp) or directories of them; each
image is read only where the model looks. Writes a CSV ``image,predicted,p_0,...,seconds``.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="RUN/checkpoint.pt written by python/train.py")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--out", default="predictions.csv", help="CSV of class probabilities per image")
    p.add_argument("--plot", metavar="DIR", help="write an attention overlay per image into DIR")
    p.add_argument("--tissue-mask", action=argparse.BooleanOptionalAction, default=None,
                   help="stage I on tissue only (default: if the model was trained on slides)")  # fmt: skip
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0, help="for models that sample patches at evaluation")
    a = p.parse_args(argv)

    import torch

    from zoomkern.training.predict import expand_inputs, load_model, predict_paths

    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model, cfg = load_model(a.checkpoint, a.device)
    paths = expand_inputs(a.inputs)
    rows = predict_paths(model, cfg, paths, out_csv=a.out, plot_dir=a.plot, tissue=a.tissue_mask,
                         device=a.device)  # fmt: skip
    secs = sum(r["seconds"] for r in rows)
    print(f"{len(rows)} image(s), {secs / max(len(rows), 1):.2f} s/image; probabilities: {a.out}"
          + (f"; attention pictures: {a.plot}" if a.plot else ""))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
