"""K-fold cross-validation as the papers report it: one training run per fold, then mean and std.

``run_kfold(cfg)`` writes ``<out>/config.yaml``, trains fold k into ``<out>/fold_<k>/`` and, when it is
done, writes ``<out>/fold_<k>/result.json`` and rewrites ``<out>/folds.csv`` (one row per finished fold,
then the mean and the sample standard deviation, ddof=1). With ``cfg.resume`` finished folds are read
back, not rerun, and the interrupted fold continues from its checkpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import sys

import numpy as np
import torch

from .config import TrainConfig

COLUMNS = ["fold", "test_acc", "test_auc", "test_loss", "train_acc", "train_loss", "epochs_run",
           "train_sec_per_sample", "total_seconds"]  # fmt: skip


def fold_numbers(cfg: TrainConfig) -> list[int]:
    """The folds of ``cfg.dataset`` a ``--folds K`` run visits."""
    if cfg.dataset == "traffic_signs":  # stratified folds over Set1 (Set2 stays unused)
        return list(range(1, cfg.folds + 1))
    if cfg.dataset != "colon":
        raise ValueError(f"--folds: the {cfg.dataset} data set has no folds (colon and traffic_signs have)")
    from ..data.colon import csv_folds

    present = csv_folds(cfg.root)
    if present and len(present) != cfg.folds:
        raise ValueError(f"--folds {cfg.folds}: {cfg.root} holds fold CSVs for {len(present)} folds "
                         f"{present}; pass --folds {len(present)}")  # fmt: skip
    return present or list(range(1, cfg.folds + 1))


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties get their average rank."""
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x), np.float64)
    xs = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and xs[j + 1] == xs[i]:
            j += 1
        r[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return r


def binary_auc(scores, positive) -> float:
    """ROC AUC (Mann-Whitney U / (n_pos n_neg), ties count one half); nan if a class is absent."""
    scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = _ranks(scores)
    return float((r[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc(probs, labels) -> float:
    """Binary: the AUC of p(class 1). More classes: the mean one-vs-rest AUC over the classes present."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    if probs.shape[1] == 2:
        return binary_auc(probs[:, 1], labels == 1)
    vals = [binary_auc(probs[:, c], labels == c) for c in range(probs.shape[1])]
    vals = [v for v in vals if not math.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


@torch.no_grad()
def evaluate(model, ds, cfg: TrainConfig) -> dict:
    """Accuracy and AUC of ``model`` (eval mode: deterministic top-k where configured) on ``ds``."""
    from .data import loader

    device = next(model.parameters()).device
    model.eval()
    probs, labels = [], []
    for image, low, y in loader(ds, cfg, False, 0, device):
        if device.type == "cuda":
            image, low = image.to(device), low.to(device)
        probs.append(torch.softmax(model(image, low)["logits"].float(), 1).cpu())
        labels.append(y)
    p, y = torch.cat(probs).numpy(), torch.cat(labels).numpy()
    return dict(test_acc=float((p.argmax(1) == y).mean()), test_auc=auc(p, y))


def _write(out: str, rows: list[dict]) -> str:
    path = os.path.join(out, "folds.csv")
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        for name, fn in (
            ("mean", np.nanmean),
            ("std", lambda v: np.nanstd(v, ddof=1) if len(v) > 1 else 0.0),
        ):
            w.writerow(
                {"fold": name, **{c: float(fn([r.get(c, np.nan) for r in rows])) for c in COLUMNS[1:]}}
            )
    os.replace(tmp, path)
    return path


def run_kfold(cfg: TrainConfig, log=print) -> dict:
    """Train and test every fold; returns {rows, mean, std (acc, auc), csv}."""
    from .loop import train, write_run_config

    folds = fold_numbers(cfg)
    os.makedirs(cfg.out, exist_ok=True)
    if int(os.environ.get("RANK", "0")) == 0:  # the whole run's settings; each fold_<k>/ has its own too
        write_run_config(cfg)
    rows = []
    for k in folds:
        fout = os.path.join(cfg.out, f"fold_{k}")
        done = os.path.join(fout, "result.json")
        if cfg.resume and os.path.isfile(done):
            with open(done) as f:
                rows.append(json.load(f))
            log(f"fold {k}: done earlier (test acc {rows[-1]['test_acc']:.3f}), skipped", file=sys.stderr)
            continue
        resume = cfg.resume and os.path.isfile(os.path.join(fout, "checkpoint.pt"))
        fcfg = dataclasses.replace(cfg, fold=k, out=fout, resume=resume)
        s = train(fcfg)
        _, test = _test_set(fcfg)
        row = dict(fold=k, **evaluate(s["model_obj"], test, fcfg))
        row.update({c: float(s[c]) if c != "epochs_run" else int(s[c]) for c in COLUMNS[3:] if c in s})
        with open(done + ".tmp", "w") as f:
            json.dump(row, f)
        os.replace(done + ".tmp", done)
        rows.append(row)
        _write(cfg.out, rows)
        log(f"fold {k}: test acc {row['test_acc']:.3f}, AUC {row['test_auc']:.3f}", file=sys.stderr)
    path = _write(cfg.out, rows)
    acc, au = np.array([r["test_acc"] for r in rows]), np.array([r["test_auc"] for r in rows])
    sd = lambda v: float(np.nanstd(v, ddof=1)) if len(v) > 1 else 0.0
    return dict(rows=rows, acc_mean=float(acc.mean()), acc_std=sd(acc), auc_mean=float(np.nanmean(au)),
                auc_std=sd(au), csv=path, folds=len(rows))  # fmt: skip


def _test_set(cfg: TrainConfig):
    from .registry import build

    spec = build(dataclasses.replace(cfg))
    return spec.train, spec.test


def kfold_line(r: dict) -> str:
    return (
        f"{r['folds']}-fold cross-validation: accuracy {r['acc_mean']:.3f} +- {r['acc_std']:.3f}, "
        f"AUC {r['auc_mean']:.3f} +- {r['auc_std']:.3f} (mean +- std over folds) | {r['csv']}"
    )
