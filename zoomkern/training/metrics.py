"""Per-epoch metrics: peak memory (CPU: VmHWM after /proc/self/clear_refs; CUDA: the allocator's peak),
a CSV log and optional TensorBoard."""

from __future__ import annotations

import csv
import os

import torch


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the measurement is only a lower bound then
        pass


class PeakMemory:
    """``start()`` then ``peak()``: bytes above the level at start (CUDA: allocated tensor bytes;
    CPU: resident set after ``malloc_trim``, so it also counts pages touched by data loading, and misses
    memory the allocator keeps in caches it cannot trim: a lower bound, read it beside ``absolute()``)."""

    def __init__(self, device: torch.device):
        self.cuda = torch.device(device).type == "cuda"
        self.base = 0

    def start(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return
        _malloc_trim()  # hand freed heap back to the OS, so this epoch's allocations show up as RSS growth
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # "5" resets the peak RSS (VmHWM) to the current RSS
        except OSError:
            pass
        self.base = (_status_kib("VmRSS") or 0) * 1024

    def peak(self) -> int | None:
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - self.base
        hwm = _status_kib("VmHWM")
        return None if hwm is None else max(0, hwm * 1024 - self.base)

    def absolute(self) -> int | None:
        """The whole peak: CUDA allocated bytes, or the process's peak RSS (Python, torch and data
        pages included) on CPU."""
        if self.cuda:
            return torch.cuda.max_memory_allocated()
        hwm = _status_kib("VmHWM")
        return None if hwm is None else hwm * 1024


class Logger:
    """One CSV row per epoch (rewritten on resume so rows after the resumed epoch disappear), and
    TensorBoard scalars when tensorboard is installed."""

    def __init__(self, out_dir: str, start_epoch: int = 0, tensorboard: bool = True):
        self.path = os.path.join(out_dir, "metrics.csv")
        self.rows: list[dict] = []
        if start_epoch > 0 and os.path.isfile(self.path):
            with open(self.path, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < start_epoch]
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(os.path.join(out_dir, "tb"))
            except Exception:  # tensorboard not installed: the CSV is enough
                self.tb = None

    def log(self, row: dict) -> None:
        self.rows.append(row)
        with open(self.path + ".tmp", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row.keys()))
            w.writeheader()
            w.writerows(self.rows)
        os.replace(self.path + ".tmp", self.path)
        if self.tb is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, int(row["epoch"]))
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
