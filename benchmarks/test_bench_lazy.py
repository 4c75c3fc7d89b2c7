"""Lazy training batches against collated ones: the per-sample cost of loading a batch and taking one
training step (forward, backward, AdamW), through the two loaders, on a small generated Megapixel MNIST
at the preset's canvas size (paper: 1500x1500, 50 noise stamps; demo preset in the CI smoke run).

- eager: the loader before zk.io, ``ds[i]`` copies each whole canvas out of the memmap and the default
  collate stacks them into a (B, 1, H, W) tensor (2.25 MB per paper canvas, twice);
- lazy: ``zoomkern.training.data.loader``, a batch holds zk.io sources over the memmap rows and the
  model reads only its patches (and the stored low-resolution views).

Both sides in one process, interleaved, same model, same data; "data only" iterates the loader alone.
"""

from __future__ import annotations

import tempfile

import _util
import pytest
import torch
import torch.nn.functional as F

from zoomkern.training import PRESETS, TrainConfig, build_model

N_IMAGES = {"full": 32, "quick": 8}


def _data(cfg: TrainConfig, n: int, root: str):
    from zoomkern.data.megapixel_mnist import MegapixelMNIST, make_megapixel_mnist

    make_megapixel_mnist(root, n, 0, size=tuple(cfg.size), n_noise=cfg.n_noise, progress=False)
    return MegapixelMNIST(root, "train")


def _passes(model, opt, batches):
    def one_pass():
        for image, low, y in batches():
            out = model(image, low, labels=y)
            loss = F.cross_entropy(out["logits"], y) + out["aux_loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return one_pass


def measure(quick: bool, models=("zoomin", "ats")):
    from zoomkern.training.data import loader

    cfg = TrainConfig(**PRESETS["demo" if quick else "paper"])
    n = N_IMAGES["quick" if quick else "full"]
    root = tempfile.mkdtemp(prefix="zk-bench-lazy-")
    ds = _data(cfg, n, root)
    B = min(cfg.batch_size, n)
    cpu = torch.device("cpu")
    loaders = {
        "eager": lambda: torch.utils.data.DataLoader(ds, batch_size=B),
        "lazy": lambda: loader(ds, TrainConfig(batch_size=B), False, 0, cpu),
    }
    fns = {f"data only, {k}": (lambda mk=mk: [None for _ in mk()]) for k, mk in loaders.items()}
    for name in models:
        cfg.model = name
        for kind, mk in loaders.items():
            torch.manual_seed(0)
            model = build_model(cfg).train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            fns[f"{name}, {kind}"] = _passes(model, opt, mk)
    t = _util.medians(fns, rounds=1 if quick else 3, warmup=1)
    case = f"load + train step, {n} images {cfg.size[0]}x{cfg.size[1]} u8, batch {B}"
    return fns, dict(case=case, sec_per_sample={k: v / n for k, v in t.items()}, models=models)


def fmt_table(res: dict) -> str:
    s = res["sec_per_sample"]
    head = "| what | eager (collated) ms/sample | lazy (sources) ms/sample | speed-up |"
    lines = [f"{res['case']}:\n", head,
             "|---|---|---|---|"]  # fmt: skip
    for what in ("data only", *res["models"]):
        e, lz = s[f"{what}, eager"], s[f"{what}, lazy"]
        lines.append(f"| {what} | {1e3 * e:.2f} | {1e3 * lz:.2f} | {e / lz:.2f}x |")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def measured(request):
    return measure(_util.quick(request.config))


@pytest.mark.parametrize("kind", ["eager", "lazy"])
def test_load_and_train_step(benchmark, measured, kind):
    fns, res = measured
    benchmark.group = res["case"]
    benchmark.extra_info.update({k: v for k, v in res["sec_per_sample"].items() if k.endswith(kind)})
    benchmark.pedantic(fns[f"zoomin, {kind}"], rounds=1, iterations=1)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"{_util.machine()}, {a.threads} thread(s)")
    print(fmt_table(measure(a.quick)[1]))
