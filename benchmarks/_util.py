"""Shared timing, memory and reporting helpers for the benchmarks and ``report.py``.

Ratios are measured here with ``time.perf_counter`` medians, zoomkern and its baselines interleaved
round by round in one process on the same inputs, so machine noise hits every side alike. The
pytest-benchmark rows time each side again on their own; the ratios they carry in ``extra_info`` come
from these interleaved medians.
"""

from __future__ import annotations

import ctypes
import functools
import platform
import re
import statistics
import time
from collections.abc import Callable

import torch

import zoomkern  # noqa: F401  (registers the ops, imports zoomkern._C when it is built)
from zoomkern import backends


def backend(op: str, device="cpu") -> str:
    """The backend auto-selection picks for ``op`` on ``device`` (what the numbers measure)."""
    return backends.select(op, torch.device(device))[0]


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def medians(fns: dict[str, Callable[[], object]], *, rounds: int, warmup: int = 1, device="cpu"):
    """{name: median seconds} over ``rounds`` rounds; each round runs every fn once, in turn."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


@functools.cache
def memcpy_gbps(nbytes: int = 64 << 20, rounds: int = 15) -> float:
    """This machine's copy rate in GB/s, measured once per session: the memory ceiling of every CPU kernel.

    A ``copy_`` of ``nbytes`` between two buffers far larger than the caches, with torch's threads (as the
    kernels use), median of ``rounds``. Counts bytes read + bytes written (2 * nbytes per copy), the same
    convention as the benchmarks' bytes models, so a kernel's GB/s divided by this is its fraction of the
    memory limit.
    """
    src = torch.ones(nbytes, dtype=torch.uint8)
    dst = torch.empty_like(src)
    t = medians({"copy": lambda: dst.copy_(src)}, rounds=rounds, warmup=2)["copy"]
    return 2 * nbytes / t / 1e9


def _vm_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


def peak_rss_delta(fn: Callable[[], object]) -> int | None:
    """Bytes the process's resident set grew by at its peak while ``fn`` ran (CPU peak memory).

    torch has no CPU allocator statistics; Linux lets us reset the high-water mark (clear_refs 5) and
    read it back (VmHWM). malloc_trim first hands glibc's free pages back, so blocks kept from earlier
    calls fault in afresh and are counted. None off glibc/Linux.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _vm_kib("VmRSS")
        out = fn()
        peak = _vm_kib("VmHWM")
        del out
    except OSError:
        return None
    return max(0, peak - before) * 1024


def peak_cuda_delta(fn: Callable[[], object]) -> int:
    """Bytes allocated on the current CUDA device at the peak of ``fn``, above what was held before."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return peak


def peak_memory(fn: Callable[[], object], device="cpu") -> int | None:
    return peak_cuda_delta(fn) if torch.device(device).type == "cuda" else peak_rss_delta(fn)


def quick(config) -> bool:
    """True under ``--benchmark-disable`` (the CI smoke run): measure once, on small inputs."""
    return bool(config.getoption("benchmark_disable", default=False))


def result(
    case: str,
    op: str,
    t: dict[str, float],
    nbytes: int,
    targets: dict[str, str],
    *,
    device="cpu",
    zk: str = "zoomkern",
    **extra,
) -> dict:
    """One measured case: times, GB/s of every side under the same bytes model, zoomkern's ratios."""
    out = {
        "case": case,
        "backend": backend(op, device),
        "bytes": int(nbytes),
        "targets": dict(targets),  # {baseline: the target for zoomkern against it}
        "seconds": dict(t),
        "gbps": {name: nbytes / s / 1e9 for name, s in t.items()},
        "ratio": {name: s / t[zk] for name, s in t.items() if name != zk},  # > 1: zoomkern faster
    }
    out.update(extra)
    return out


def store(benchmark, res: dict, impl: str) -> None:
    """Put a measured case into a pytest-benchmark row's extra_info (every value JSON-friendly)."""
    info = benchmark.extra_info
    info["impl"] = impl
    for key in ("case", "backend", "bytes", "targets"):
        info[key] = res[key]
    info["gbps_interleaved"] = round(res["gbps"][impl], 3)
    info["median_s_interleaved"] = res["seconds"][impl]
    for name, r in res["ratio"].items():
        info[f"ratio_zoomkern_vs_{name}"] = round(r, 3)
    for key, v in res.items():
        if key.startswith("peak_") or key in ("rate_fraction", "note", "memcpy_gbps"):
            info[key] = v


def run(benchmark, res: dict, impl: str, fn: Callable[[], object]) -> None:
    """One pytest-benchmark row: group by case, extra_info from ``res``, then GB/s of this row's median."""
    benchmark.group = res["case"]
    store(benchmark, res, impl)
    benchmark(fn)
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    if stats is not None and getattr(stats, "median", 0):  # absent under --benchmark-disable
        benchmark.extra_info["gbps"] = round(res["bytes"] / stats.median / 1e9, 3)


def machine() -> str:
    import os

    return (
        f"{os.cpu_count()} cores CPU ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )


def fmt_table(results: list[dict]) -> str:
    """Markdown: one row per (case, baseline) with zoomkern's time, the baseline's, and the ratio."""
    lines = [
        "| case | backend | zoomkern | baseline | baseline time | zoomkern / baseline speed | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        zk_t = r["seconds"]["zoomkern"]
        zk_col = f"{zk_t * 1e3:.3f} ms ({r['gbps']['zoomkern']:.2f} GB/s)"
        if r.get("memcpy_gbps"):  # the memory ceiling of this machine (memcpy_gbps), when measured
            frac = r["gbps"]["zoomkern"] / r["memcpy_gbps"]
            zk_col += f", {100 * frac:.0f}% of memcpy {r['memcpy_gbps']:.1f} GB/s"
        for name, ratio in r["ratio"].items():
            base = f"{r['seconds'][name] * 1e3:.3f} ms ({r['gbps'][name]:.2f} GB/s)"
            shown = f"{ratio:.2f}x" if name != "memcpy" else f"{100 * ratio:.0f}% of memcpy rate"
            lines.append(
                f"| {r['case']} | {r['backend']} | {zk_col} | {name} | {base} | {shown} | "
                f"{r['targets'].get(name, '')} |"
            )
    return "\n".join(lines)
