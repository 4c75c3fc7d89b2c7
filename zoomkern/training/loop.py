"""The training loop: AdamW, warmup + cosine schedule, clipping, AMP on CUDA, checkpoints, resume, DDP."""

from __future__ import annotations

import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoint, config_file, diagnosis
from . import distributed as dist
from .config import TrainConfig, build_model, prior_weight_at
from .data import datasets, loader
from .metrics import Logger, PeakMemory


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def param_groups(model, cfg: TrainConfig) -> list[dict]:
    """The rest, the attention nets (lr * attention_lr_mult) and, when attention1_lr_mult is set, ZoomIn's
    stage-I net on its own (lr * attention1_lr_mult)."""
    named = list(model.named_parameters())
    own1 = cfg.attention1_lr_mult is not None
    att1 = [p for n, p in named if own1 and n.startswith("attention1.")]
    att = [p for n, p in named if n.startswith("attention") and not (own1 and n.startswith("attention1."))]
    rest = [p for n, p in named if not n.startswith("attention")]
    groups = [dict(params=rest, lr=cfg.lr)]
    if att:
        groups.append(dict(params=att, lr=cfg.lr * cfg.attention_lr_mult))
    if att1:
        groups.append(dict(params=att1, lr=cfg.lr * cfg.attention1_lr_mult))
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


def run_epoch(model, batches, device, cfg: TrainConfig, *, opt=None, sched=None, scaler=None, desc="",
              world: dist.World = dist.World(), class_weight=None):  # fmt: skip
    """One pass; trains when ``opt`` is given. Returns loss, acc, seconds and peak bytes per sample,
    summed (times and peaks: the maximum) over the torchrun processes. ``class_weight`` (n_classes,)
    weights the training loss only; the reported loss is the plain mean."""
    from tqdm import tqdm

    train = opt is not None
    model.train(train)
    amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16
    global_size = getattr(batches.batch_sampler, "global_size", None)
    mem = PeakMemory(device)
    mem.start()
    t0 = time.perf_counter()
    loss_sum, correct, n, batch_max = 0.0, 0, 0, 1
    # Where the patches land (digit ink, noise) and how peaked the attention is: data sets that know
    # their objects' boxes (Megapixel MNIST) and models that report patch_offsets.
    # (Traffic signs: the share of patches on a sign's annotated box.)
    stats, indices = None, diagnosis.batch_indices(batches)
    psize = diagnosis.model_patch_size(model)
    stats_cls = diagnosis.stats_class(batches.dataset) or diagnosis.PatchStats
    if indices is not None and psize is not None and stats_cls.supports(batches.dataset):
        stats = stats_cls(batches.dataset, psize)
    dead = diagnosis.DeadUnits(model) if train else None  # attention units that never fire this epoch
    bar = tqdm(batches, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True, disable=not world.main)
    with torch.set_grad_enabled(train):
        for step, batch in enumerate(bar):
            image, low, y = batch[:3]
            # slides: a 4th field, where stage I may look (tissue, not padding)
            kw = dict(mask=batch[3]) if len(batch) > 3 else {}
            # Only the low views cross here: the images stay in host memory or their files (sources),
            # and the model moves just the patches it reads (pinned staging, or zero-copy from pinned).
            low = low.to(device, non_blocking=True)
            y = y.to(device)
            b = y.shape[0]
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                out = model(image, low, labels=y if train else None, **kw)
            loss = F.cross_entropy(out["logits"].float(), y)
            if stats is not None:
                stats.update(out, next(indices))
            if train:
                task = loss if class_weight is None else _weighted_ce(out["logits"].float(), y, class_weight)
                total = task + out["aux_loss"].float()
                if world.enabled and global_size is not None:
                    # DDP averages the ranks' gradients; weighting by this rank's share of the global
                    # batch makes that the gradient of the global batch mean, even for uneven slices.
                    total = total * (b * world.size / global_size(step))
                opt.zero_grad(set_to_none=True)
                scaler.scale(total).backward()
                scaler.unscale_(opt)
                if cfg.clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
                scaler.step(opt)
                scaler.update()
                sched.step()
            batch_max = max(batch_max, b)
            loss_sum += float(loss.detach()) * b
            correct += int((out["logits"].argmax(1) == y).sum())
            n += b
    secs = time.perf_counter() - t0
    peak, absolute = mem.peak(), mem.absolute()
    loss_sum, correct, n = dist.reduce(world, [loss_sum, correct, n])
    counts = stats.counts() if stats else [0.0] * stats_cls.N_COUNTS
    diag = stats_cls.result(dist.reduce(world, counts), "")
    if dead is not None:
        dead.detach()
        if dead.nets:
            diag.update(diagnosis.DeadUnits.result(dist.reduce(world, dead.counts()), ""))
    nan = float("nan")
    secs, peak, absolute, batch_max = dist.reduce(
        world, [secs, nan if peak is None else peak, nan if absolute is None else absolute, batch_max], "max"
    )
    return dict(
        peak_mb=absolute / 2**20,
        loss=loss_sum / max(n, 1),
        acc=correct / max(n, 1),
        sec_per_sample=secs / max(n, 1),
        peak_mb_per_sample=peak / batch_max / 2**20,
        seconds=secs,
        diag={k.lstrip("_"): v for k, v in diag.items()},
    )


def _weighted_ce(logits, y, w):
    # Weighted sum over the batch divided by its size (not by the weight sum, as F.cross_entropy does):
    # the gradient of the expected weighted loss, so rare-class batches are not diluted.
    return (F.cross_entropy(logits, y, reduction="none") * w.to(logits.device)[y]).mean()


def class_weights(labels, n_classes: int) -> torch.Tensor:
    """Inverse class frequency, normalised so that the weights average 1 over the training samples."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, len(labels) / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)


def _epoch_seed(cfg: TrainConfig, epoch: int, world: dist.World) -> None:
    """Under torchrun each rank draws its own patches: its RNG is reseeded from (seed, epoch, rank) at
    each epoch, so a resumed run continues exactly without storing every rank's RNG state. A single
    process keeps one stream throughout (its state is in the checkpoint)."""
    if world.enabled:
        torch.manual_seed(int(np.random.SeedSequence([cfg.seed, epoch, world.rank]).generate_state(1)[0]))


def _row(epoch: int, tr: dict, te: dict, lr: float, elapsed: float) -> dict:
    return dict(
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
        lr=lr,
        elapsed_s=elapsed,
        **{f"train_{k}": v for k, v in tr.get("diag", {}).items()},
        **{f"test_{k}": v for k, v in te.get("diag", {}).items()},
    )


def _epoch_line(epoch: int, epochs: int, tr: dict, te: dict) -> str:
    return (
        f"epoch {epoch + 1}/{epochs}: train loss {tr['loss']:.3f} acc {tr['acc']:.3f} | "
        f"test loss {te['loss']:.3f} acc {te['acc']:.3f} | "
        f"{tr['seconds']:.0f}s train, {te['seconds']:.0f}s test"
    )


def train(cfg: TrainConfig) -> dict:
    t_start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg)
    world = dist.init(device.type)
    if world.enabled and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    try:
        summary = _train(cfg, device, world, t_start)
    except BaseException:
        dist.shutdown(world, clean=False)
        raise
    dist.shutdown(world)
    return summary


def write_run_config(cfg: TrainConfig) -> str:
    """Write ``<out>/config.yaml``, the run's resolved configuration (``zoomkern train --config`` of it
    starts the same run). A resumed run rewrites it with what it continues with and says what changed, so
    the file always describes the checkpoint next to it."""
    path = os.path.join(cfg.out, "config.yaml")
    if cfg.resume and os.path.isfile(path):
        try:
            before = config_file.expand(TrainConfig, config_file.read_yaml(path), path)
        except ValueError as e:  # written by an older version, or edited by hand: replaced below
            print(f"{path}: not read back ({e}); rewritten", file=sys.stderr)
            before = {}
        now = {f: getattr(cfg, f) for f in before}
        changed = [f"{k} {before[k]!r} -> {v!r}" for k, v in now.items() if v != before[k]]
        if changed:
            print(f"resuming with changed settings: {', '.join(changed)} ({path} rewritten)", file=sys.stderr)
    header = "the resolved configuration of this run; `zoomkern train --config` of this file starts it again"
    return config_file.write(cfg, path, header)


def _train(cfg: TrainConfig, device, world: dist.World, t_start: float) -> dict:
    seed_everything(cfg.seed)
    if world.main:
        os.makedirs(cfg.out, exist_ok=True)
        write_run_config(cfg)
        if cfg.time_limit_min:
            print(f"time limit: {cfg.time_limit_min} min (--time-limit-min); the run stops after the epoch "
                  "that crosses it", file=sys.stderr, flush=True)  # fmt: skip
    per_epoch, test = datasets(cfg, world)
    weight = class_weights(per_epoch[0].labels, cfg.n_classes) if cfg.class_weights and per_epoch else None
    t_data = time.perf_counter() - t_start
    model = build_model(cfg).to(device)  # same seed on every rank; DDP also broadcasts rank 0's weights
    opt = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = len(loader(per_epoch[0], cfg, True, 0, device, world)) if per_epoch else 1
    sched = make_schedule(opt, cfg, steps)
    scaler = torch.amp.GradScaler(
        device.type, enabled=cfg.amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    )
    ckpt = os.path.join(cfg.out, "checkpoint.pt")
    start = 0
    if cfg.resume:
        start = checkpoint.restore(checkpoint.load(ckpt), model=model, optimizer=opt, scheduler=sched)
        if world.main:
            print(f"resumed from {ckpt} at epoch {start}", file=sys.stderr)
    net = model
    if world.enabled:
        ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    log = Logger(cfg.out, start) if world.main else None
    row = None
    epoch = start - 1
    for epoch in range(start, cfg.epochs):
        _epoch_seed(cfg, epoch, world)
        if hasattr(model, "prior_weight"):  # the prior's schedule (constant unless prior_weight_final)
            model.prior_weight = prior_weight_at(cfg, epoch)
        tr = run_epoch(
            net,
            loader(per_epoch[epoch], cfg, True, epoch, device, world),
            device,
            cfg,
            opt=opt,
            sched=sched,
            scaler=scaler,
            desc=f"epoch {epoch + 1}/{cfg.epochs} train",
            world=world,
            class_weight=weight,
        )
        # Evaluation runs the plain module: ranks may hold different numbers of test batches.
        te = run_epoch(
            model, loader(test, cfg, False, epoch, device, world), device, cfg, desc="test", world=world
        )
        row = _row(epoch, tr, te, sched.get_last_lr()[0], time.perf_counter() - t_start)
        if world.main:
            log.log(row)
            print(_epoch_line(epoch, cfg.epochs, tr, te), file=sys.stderr, flush=True)
            checkpoint.save(
                ckpt, model=model, optimizer=opt, scheduler=sched, epoch=epoch, config=cfg.to_dict()
            )
        last = epoch + 1 == cfg.epochs  # a run that is done anyway did not stop on its limit
        over = cfg.time_limit_min and not last and time.perf_counter() - t_start > 60 * cfg.time_limit_min
        if dist.reduce(world, [float(bool(over))], "max")[0]:  # every rank stops after the same epoch
            if world.main:
                msg = f"time limit of {cfg.time_limit_min} min (--time-limit-min) reached after epoch "
                print(f"{msg}{epoch + 1} of {cfg.epochs}; go on with --resume", file=sys.stderr, flush=True)
            break
    if log is not None:
        log.close()
    summary = dict(
        model=cfg.model,
        epochs_run=epoch + 1,
        data_seconds=t_data,
        total_seconds=time.perf_counter() - t_start,
        checkpoint=ckpt,
        csv=os.path.join(cfg.out, "metrics.csv"),
        world_size=world.size,
        rank=world.rank,
    )
    if row is not None:  # the last epoch's figures (test_acc, peaks, seconds per sample)
        summary.update({k: v for k, v in row.items() if k != "epoch"})
    if cfg.plot_images and cfg.model in ("zoomin", "ats") and world.main:
        from .plot import plot_attention, plot_diagnosis

        # the per-epoch patch diagnosis (digit / noise shares, attention entropies) from metrics.csv
        diag_plot = plot_diagnosis(summary["csv"], os.path.join(cfg.out, "diagnosis.png"))
        if diag_plot:
            summary["diagnosis_plot"] = diag_plot

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
    if s.get("world_size", 1) > 1:
        line += f" | {s['world_size']} torchrun processes"
    if s.get("plot"):
        line += f" | attention plot: {s['plot']}"
    return line
