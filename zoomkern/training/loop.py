"""The training loop: AdamW, warmup + cosine schedule, clipping, AMP on CUDA, checkpoints, resume."""

from __future__ import annotations

import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoint
from .config import TrainConfig, build_model
from .metrics import Logger, PeakMemory


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def parse_curriculum(spec: str) -> list[tuple[int, int]]:
    """ "0:2,25:2" -> [(0, 2), (25, 2)]: (noise stamps, epochs) stages before the full data set."""
    stages = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        try:
            n, e = part.split(":")
            stages.append((int(n), int(e)))
        except ValueError:
            raise ValueError(f"noise_curriculum entries are 'n_noise:epochs', got {part!r}") from None
    return stages


def _dataset(root: str, split: str, cfg: TrainConfig, n_noise: int, n_train: int, n_test: int):
    from ..data.megapixel_mnist import MegapixelMNIST, make_megapixel_mnist

    try:
        return MegapixelMNIST(root, split)
    except FileNotFoundError:
        print(
            f"generating Megapixel MNIST in {root} ({n_train} train / {n_test} test, "
            f"{cfg.size[0]}x{cfg.size[1]}, {n_noise} noise stamps)",
            file=sys.stderr,
        )
        make_megapixel_mnist(
            root, n_train, n_test, size=tuple(cfg.size), n_noise=n_noise, scale=cfg.scale, seed=cfg.data_seed
        )
        return MegapixelMNIST(root, split)


def datasets(cfg: TrainConfig):
    """(train set for each epoch, test set). Curriculum stages get their own small-noise train sets."""
    train = _dataset(cfg.root, "train", cfg, cfg.n_noise, cfg.n_train, cfg.n_test)
    test = _dataset(cfg.root, "test", cfg, cfg.n_noise, cfg.n_train, cfg.n_test)
    per_epoch = []
    for n_noise, n_epochs in parse_curriculum(cfg.noise_curriculum):
        # Same seed: the generator puts the same digits at the same places, only fewer stamps; no test split.
        ds = _dataset(f"{cfg.root}_noise{n_noise}", "train", cfg, n_noise, cfg.n_train, 0)
        per_epoch += [ds] * n_epochs
    per_epoch += [train] * max(0, cfg.epochs - len(per_epoch))
    return per_epoch[: cfg.epochs], test


def _device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def param_groups(model, cfg: TrainConfig) -> list[dict]:
    att = [p for n, p in model.named_parameters() if n.startswith("attention")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("attention")]
    groups = [dict(params=rest, lr=cfg.lr)]
    if att:
        groups.append(dict(params=att, lr=cfg.lr * cfg.attention_lr_mult))
    return groups


def make_schedule(opt, cfg: TrainConfig, steps_per_epoch: int):
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = int(cfg.warmup_epochs * steps_per_epoch)

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, total - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

    return torch.optim.lr_scheduler.LambdaLR(opt, lr_at)


def run_epoch(model, loader, device, cfg: TrainConfig, *, opt=None, sched=None, scaler=None, desc=""):
    """One pass; trains when ``opt`` is given. Returns loss, acc, seconds and peak bytes per sample."""
    from tqdm import tqdm

    train = opt is not None
    model.train(train)
    amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16
    mem = PeakMemory(device)
    mem.start()
    t0 = time.perf_counter()
    loss_sum, correct, n, batch_max = 0.0, 0, 0, 1
    with torch.set_grad_enabled(train):
        for image, low, y in tqdm(loader, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True):
            if device.type == "cuda":
                image, low = image.to(device, non_blocking=True), low.to(device, non_blocking=True)
            y = y.to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                out = model(image, low, labels=y if train else None)
            loss = F.cross_entropy(out["logits"].float(), y)
            if train:
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss + out["aux_loss"].float()).backward()
                scaler.unscale_(opt)
                if cfg.clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
                scaler.step(opt)
                scaler.update()
                sched.step()
            b = y.shape[0]
            batch_max = max(batch_max, b)
            loss_sum += float(loss.detach()) * b
            correct += int((out["logits"].argmax(1) == y).sum())
            n += b
    secs = time.perf_counter() - t0
    peak, absolute = mem.peak(), mem.absolute()
    return dict(
        peak_mb=absolute / 2**20 if absolute is not None else float("nan"),
        loss=loss_sum / max(n, 1),
        acc=correct / max(n, 1),
        sec_per_sample=secs / max(n, 1),
        peak_mb_per_sample=(peak / batch_max / 2**20) if peak is not None else float("nan"),
        seconds=secs,
    )


def _loader(ds, cfg: TrainConfig, shuffle: bool, epoch: int, device):
    g = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)  # order fixed by (seed, epoch): resumable
    return torch.utils.data.DataLoader(
        ds,
        batch_size=cfg.batch_size,
        shuffle=shuffle,
        generator=g,
        num_workers=0,
        pin_memory=device.type == "cuda",
    )


def train(cfg: TrainConfig) -> dict:
    t_start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg)
    seed_everything(cfg.seed)
    os.makedirs(cfg.out, exist_ok=True)
    per_epoch, test = datasets(cfg)
    t_data = time.perf_counter() - t_start
    model = build_model(cfg).to(device)
    opt = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = make_schedule(opt, cfg, math.ceil(cfg.n_train / cfg.batch_size))
    scaler = torch.amp.GradScaler(
        device.type, enabled=cfg.amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    )
    ckpt = os.path.join(cfg.out, "checkpoint.pt")
    start = 0
    if cfg.resume:
        start = checkpoint.restore(checkpoint.load(ckpt), model=model, optimizer=opt, scheduler=sched)
        print(f"resumed from {ckpt} at epoch {start}", file=sys.stderr)
    log = Logger(cfg.out, start)
    tr = te = None
    for epoch in range(start, cfg.epochs):
        tr = run_epoch(
            model,
            _loader(per_epoch[epoch], cfg, True, epoch, device),
            device,
            cfg,
            opt=opt,
            sched=sched,
            scaler=scaler,
            desc=f"epoch {epoch + 1}/{cfg.epochs} train",
        )
        te = run_epoch(model, _loader(test, cfg, False, epoch, device), device, cfg, desc="test")
        row = dict(
            epoch=epoch,
            train_loss=tr["loss"],
            train_acc=tr["acc"],
            test_loss=te["loss"],
            test_acc=te["acc"],
            train_sec_per_sample=tr["sec_per_sample"],
            test_sec_per_sample=te["sec_per_sample"],
            train_peak_mb_per_sample=tr["peak_mb_per_sample"],
            train_peak_mb=tr["peak_mb"],
            test_peak_mb_per_sample=te["peak_mb_per_sample"],
            lr=sched.get_last_lr()[0],
            elapsed_s=time.perf_counter() - t_start,
        )
        log.log(row)
        print(
            f"epoch {epoch + 1}/{cfg.epochs}: train loss {tr['loss']:.3f} acc {tr['acc']:.3f} | test loss "
            f"{te['loss']:.3f} acc {te['acc']:.3f} | {tr['seconds']:.0f}s train, {te['seconds']:.0f}s test",
            file=sys.stderr,
            flush=True,
        )
        checkpoint.save(ckpt, model=model, optimizer=opt, scheduler=sched, epoch=epoch, config=cfg.to_dict())
        if cfg.time_limit_min and time.perf_counter() - t_start > 60 * cfg.time_limit_min:
            print(f"time limit of {cfg.time_limit_min} min reached after epoch {epoch + 1}", file=sys.stderr)
            break
    log.close()
    summary = dict(
        model=cfg.model,
        epochs_run=(epoch + 1 if cfg.epochs > start else start),
        data_seconds=t_data,
        total_seconds=time.perf_counter() - t_start,
        checkpoint=ckpt,
        csv=log.path,
    )
    if te is not None:
        summary.update(
            test_acc=te["acc"],
            train_peak_mb_per_sample=tr["peak_mb_per_sample"],
            train_peak_mb=tr["peak_mb"],
            test_peak_mb_per_sample=te["peak_mb_per_sample"],
            train_sec_per_sample=tr["sec_per_sample"],
            test_sec_per_sample=te["sec_per_sample"],
        )
    if cfg.plot_images and cfg.model in ("zoomin", "ats"):
        from .plot import plot_attention

        summary["plot"] = plot_attention(
            model, test, os.path.join(cfg.out, "attention.png"), cfg.plot_images, device
        )
    summary["model_obj"] = model
    return summary


def summary_line(s: dict) -> str:
    if "test_acc" not in s:
        return f"{s['model']}: nothing to train (already at epoch {s['epochs_run']})"
    line = (
        f"{s['model']}: test accuracy {s['test_acc']:.1%} | peak memory {s['train_peak_mb_per_sample']:.2f} "
        f"MiB/sample train (process peak {s['train_peak_mb']:.0f} MiB) | "
        f"{1e3 * s['train_sec_per_sample']:.1f} ms/sample train, {1e3 * s['test_sec_per_sample']:.1f} test | "
        f"{s['epochs_run']} epochs, {s['total_seconds'] / 60:.1f} min total"
    )
    if s.get("plot"):
        line += f" | attention plot: {s['plot']}"
    return line
