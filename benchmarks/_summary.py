"""The summary ``pytest benchmarks/`` ends with: for every case, zoomkern against each baseline.

Rows are pytest-benchmark rows (one per implementation, grouped by case); everything is read from
their ``extra_info`` as the bench modules write it, so a new module only has to use these keys:
- implementation: ``impl`` (kernels) or ``model`` (models); zoomkern's row is "zoomkern" or "zoomin";
- time: ``sec_per_image`` (scaling), ``sec_per_sample_interleaved`` (models), ``median_s_interleaved``
  (kernels: the interleaved median measured side by side), else the row's own pytest-benchmark median;
- memory: ``peak_mib_per_image``, ``peak_mib_per_sample``, or ``peak_bytes_<impl>``;
- throughput: ``gbps`` (this row's median), else ``gbps_interleaved``; ``rate_fraction`` (of the copy rate);
- ``status: "oom"`` with ``cap_gib_above_idle``: the baseline ran out of memory at that cap.
Ratios are baseline / zoomkern, so > 1 means zoomkern is faster or smaller.
"""

from __future__ import annotations

ZK_NAMES = ("zoomkern", "zoomin")


def row(fixture) -> dict | None:
    """What the summary needs from a finished test's ``benchmark`` fixture (None: nothing recorded)."""
    info = dict(getattr(fixture, "extra_info", {}) or {})
    if not info:
        return None
    stats = getattr(getattr(fixture, "stats", None), "stats", None)
    median = getattr(stats, "median", None) if stats is not None else None
    return dict(group=fixture.group or fixture.name, name=fixture.name, info=info, median=median)


def _impl(r):
    return r["info"].get("impl") or r["info"].get("model") or r["name"]


def _seconds(r):
    i = r["info"]
    for k in ("sec_per_image", "sec_per_sample_interleaved", "median_s_interleaved"):
        if i.get(k) is not None:
            return float(i[k])
    return r["median"] if i.get("status", "ok") == "ok" else None


def _mib(r):
    i = r["info"]
    for k in ("peak_mib_per_image", "peak_mib_per_sample"):
        if i.get(k) is not None:
            return float(i[k])
    b = i.get(f"peak_bytes_{_impl(r)}")
    return b / 2**20 if b is not None else None


def _gbps(r):
    v = r["info"].get("gbps", r["info"].get("gbps_interleaved"))
    if not isinstance(v, (int, float)):
        return ""
    frac = r["info"].get("rate_fraction")  # zoomkern's rate over the machine's copy rate, where measured
    if _impl(r) in ZK_NAMES and isinstance(frac, (int, float)):
        return f"{v:.2f} ({100 * frac:.0f}% of copy)"
    return f"{v:.2f}"


def _t(s):
    if s is None:
        return "-"
    return f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s"


def _m(m):
    return "-" if m is None else f"{m:.3g} MiB"


def lines(rows: list[dict]) -> list[str]:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    head = ("case", "zoomkern", "baseline", "zk time", "base time", "speed", "zk mem", "base mem", "memory")
    table = [head + ("zk GB/s", "base GB/s")]
    for case, rs in groups.items():
        zk = next((r for r in rs if _impl(r) in ZK_NAMES), None)
        if zk is None:  # a case without a zoomkern row (e.g. a memcpy-only probe): GB/s only
            table += [
                (case, "", _impl(r), "", _t(_seconds(r)), "", "", _m(_mib(r)), "", "", _gbps(r)) for r in rs
            ]
            continue
        zt, zm = _seconds(zk), _mib(zk)
        for r in rs:
            if r is zk:
                continue
            bt, bm = _seconds(r), _mib(r)
            if r["info"].get("status") == "oom":
                cap = r["info"].get("cap_gib_above_idle")
                speed = "OOM"
                mem = f">{cap * 1024 / zm:.0f}x (OOM at {cap:g} GiB)" if cap and zm else "OOM"
                bm_s = f"> {cap:g} GiB" if cap else "OOM"
            elif r["info"].get("status", "ok") != "ok" or zk["info"].get("status", "ok") != "ok":
                speed = mem = bm_s = "failed"
            else:
                speed = f"{bt / zt:.2f}x" if bt and zt else "-"
                mem = f"{bm / zm:.2f}x" if bm is not None and zm else "-"
                bm_s = _m(bm)
            table.append(
                (case, _impl(zk), _impl(r), _t(zt), _t(bt), speed, _m(zm), bm_s, mem, _gbps(zk), _gbps(r))
            )
        if len(rs) == 1:
            table.append((case, _impl(zk), "", _t(zt), "", "", _m(zm), "", "", _gbps(zk), ""))
    widths = [max(len(str(t[c])) for t in table) for c in range(len(head) + 2)]
    out = ["  ".join(str(v).ljust(w) for v, w in zip(t, widths, strict=True)).rstrip() for t in table]
    out.insert(1, "  ".join("-" * w for w in widths))
    return out


def write(terminalreporter, rows: list[dict]) -> None:
    if not rows:
        return
    tr = terminalreporter
    tr.write_sep("=", "zoomkern against the baselines")
    tr.write_line(
        "speed = baseline time / zoomkern time, memory = baseline peak / zoomkern peak (> 1: zoomkern "
        "faster / smaller); times per image or per call as each case measures them; GB/s per row."
    )
    for line in lines(rows):
        tr.write_line(line)
