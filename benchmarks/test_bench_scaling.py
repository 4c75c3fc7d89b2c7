"""Memory and time as the image grows: Zoom-In against ATS and the two CNN baselines.

One training step (forward, backward, AdamW) and one inference step (no_grad forward), batch 1 and
batch 8, at image sides 1000 ... 100000 (uint8, 3 channels). Sides below 8000 are tensors in RAM; from
8000 up the image is a tiled pyramidal BigTIFF on disk (written once into ``--scaling-cache``), read
through ``zk.io`` and never held as one tensor (the full-image CNN must read all of it, inside its step).
Each side's configuration (_scaling_data.config: fixed low view, tile grid, tile views, patches) goes
into the row's extra_info.

Method. Every point runs in its own fresh process, forked from a forkserver that has only imported
torch and zoomkern (so no point inherits another's heap). The process builds its inputs and model,
then caps its address space with ``RLIMIT_AS`` at its idle VmSize + ``--scaling-cap-gib`` (default 6
GiB; a torch CUDA build maps ~3.3 GB of address space at import, so a cap must be relative to that).
One warm-up step, then pytest-benchmark times the steps (as many as fit ~8 s, 1 to 5).
- seconds per image: median step time in the process / batch;
- peak memory per image: before each step ``malloc_trim``, ``5 > /proc/self/clear_refs`` (resets the
  high-water mark), VmRSS; after it VmHWM; (VmHWM - VmRSS) / batch, the largest over the timed steps.
A step that fails to allocate under the cap is recorded as ``status: "oom"`` with the cap in
extra_info (its pytest-benchmark row times nothing); it is never skipped. Zoom-In must run every side.

``pytest benchmarks/ --benchmark-disable`` (CI smoke) runs sides 1000 and 2000 at batch 1, one step
each, still one process per point. ``pytest benchmarks/`` runs sides 1000-4000; ``--scaling-sides all``
(or a list), ``--scaling-batches``, ``--scaling-cap-gib``, ``--scaling-threads`` (default 1) and
``--scaling-budget-min`` (points left when it is spent are skipped, each saying so) shape a real run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import time

import _scaling_data as D
import _util
import pytest

MODES, BATCHES = ("train", "infer"), (1, 8)
BUDGET_S = 8.0  # timed seconds per point (at least one step)
STEP_TIMEOUT_S = 1800.0

_CTX = mp.get_context("forkserver")
# The forkserver imports these once; every point is a fork of that clean, warm process.
_CTX.set_forkserver_preload(["_scaling_worker"])


def sides(config) -> list[int]:
    opt = config.getoption("scaling_sides")
    if opt is None:
        return list(D.SIDES[:2] if _util.quick(config) else D.SIDES[:3])
    if opt == "all":
        return list(D.SIDES)
    return [int(s) for s in opt.split(",")]


def batches(config) -> list[int]:
    opt = config.getoption("scaling_batches")
    if opt is None:
        return [1] if _util.quick(config) else list(BATCHES)
    return [int(b) for b in opt.split(",")]


def spread(xs: list) -> list:
    """The ends first, then midpoints of the gaps: a prefix of the order spans the whole range."""
    if len(xs) <= 2:
        return list(xs)
    out, gaps = [xs[0], xs[-1]], [(0, len(xs) - 1)]
    while gaps:
        a, b = gaps.pop(0)
        if b - a > 1:
            m = (a + b) // 2
            out.append(xs[m])
            gaps += [(a, m), (m, b)]
    return out


def pytest_generate_tests(metafunc):
    if "point" not in metafunc.fixturenames:
        return
    # Batch 1 at every side first, the larger batches' sides ends first: a run cut short by
    # --scaling-budget-min still spans the range.
    bs, ss = batches(metafunc.config), sides(metafunc.config)
    pts = [
        (m, mode, b, s)
        for b in bs
        for s in (ss if b == bs[0] else spread(ss))
        for mode in MODES
        for m in D.MODELS
    ]
    metafunc.parametrize("point", pts, ids=[f"b{b}-{s}-{mode}-{m}" for m, mode, b, s in pts])


_T0 = time.monotonic()


class Worker:
    """The parent's handle on one point's process."""

    def __init__(self, spec: dict):
        import _scaling_worker

        self.conn, child = _CTX.Pipe()
        self.proc = _CTX.Process(target=_scaling_worker.main, args=(child, spec), daemon=True)
        self.proc.start()
        child.close()
        self.status, self.error, self.times, self.peaks, self.finite = "ok", None, [], [], True
        self.info = self._recv(STEP_TIMEOUT_S)

    def _recv(self, timeout):
        if not self.conn.poll(timeout):
            self.proc.kill()
            self.status, self.error = "error", f"no answer in {timeout:.0f} s"
            return None
        try:
            msg = self.conn.recv()
        except EOFError:
            self.proc.join(5)
            # Killed (the system's OOM killer: SIGKILL) or aborted: the process could not say why.
            self.status, self.error = "error", f"worker died, exit code {self.proc.exitcode}"
            return None
        if msg[0] in ("oom", "error"):
            self.status, self.error = msg
            return None
        return msg[1] if msg[0] == "ready" else msg

    def step(self) -> None:
        """One step in the worker (what pytest-benchmark times); a failure is recorded, not raised."""
        if self.status != "ok":
            return
        self.conn.send("step")
        msg = self._recv(STEP_TIMEOUT_S)
        if msg is not None:
            self.times.append(msg[1])
            self.peaks.append(msg[2])
            self.finite &= msg[3]

    def close(self) -> None:
        if self.proc.is_alive():
            try:
                self.conn.send("exit")
            except OSError:
                pass
            self.proc.join(10)
            if self.proc.is_alive():
                self.proc.kill()
        self.conn.close()


def test_scaling(benchmark, point, request):
    model, mode, B, side = point
    cfg = D.config(side)
    conf = request.config
    budget = conf.getoption("scaling_budget_min")
    if budget is not None and time.monotonic() - _T0 > 60 * budget:
        pytest.skip(f"not run: the --scaling-budget-min of {budget:g} min was spent")
    given = dict(kv.split("=", 1) for kv in conf.getoption("scaling_tiff"))
    path = given.get(str(side)) or str(D.cached_tiff(side, conf.getoption("scaling_cache")))
    cap = float(conf.getoption("scaling_cap_gib"))
    threads = int(conf.getoption("scaling_threads"))
    spec = dict(model=model, mode=mode, batch=B, side=side, path=path, cap_gib=cap, threads=threads)

    benchmark.group = f"scaling {mode} batch {B} side {side}"
    info = benchmark.extra_info
    info.update(case=benchmark.group, model=model, mode=mode, batch=B, side=side, config=cfg, file=path)
    info.update(cap_gib_above_idle=cap, threads=threads, load_avg=round(os.getloadavg()[0], 2))

    w = Worker(spec)
    try:
        if _util.quick(conf):
            benchmark.pedantic(w.step, rounds=1, iterations=1)
        else:
            w.step()  # warm-up: lazy initialisations, optimizer state, first-touch of the tile caches
            warm = w.times[-1] if w.times else None
            w.times, w.peaks = [], []
            if w.status == "ok":
                rounds = max(1, min(5, int(BUDGET_S / max(warm, 1e-3))))
                benchmark.pedantic(w.step, rounds=rounds, iterations=1)
            else:
                # The row must exist in the saved results to say "out of memory at this cap"; it times
                # a no-op, so read status before the stats.
                benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    finally:
        w.close()

    info["status"] = w.status
    if w.info:
        info.update(
            idle_rss_mib=round(w.info["idle_rss"] / 2**20, 1),
            idle_vmsize_gib=round(w.info["idle_vmsize"] / 2**30, 2),
            rlimit_as_gib=round(w.info["rlimit_as"] / 2**30, 2),
        )
    if w.status == "ok":
        info["sec_per_image"] = statistics.median(w.times) / B
        info["peak_mib_per_image"] = round(max(w.peaks) / B / 2**20, 2)
        info["steps_timed"] = len(w.times)
    else:
        info["error"] = w.error
    assert w.status in ("ok", "oom"), f"{model} {mode} b{B} side {side}: {w.error}"
    assert not (model == "zoomin" and w.status == "oom"), f"Zoom-In ran out of memory: {w.error}"
    assert w.finite, f"{model} {mode} b{B} side {side}: non-finite loss or logits"
