"""Run the CPU ratio measurements of the benchmarks and print them as a markdown table.

    .venv/bin/python benchmarks/report.py [--quick] [--json PATH]

The same interleaved perf_counter medians the pytest-benchmark rows carry in extra_info; ratios > 1
mean zoomkern is faster. The tables in benchmarks/RESULTS.md are pasted from this output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# _util and the bench modules; the tree's zoomkern when it is not installed.
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import _util  # noqa: E402
import test_bench_gather  # noqa: E402
import test_bench_lazy  # noqa: E402
import test_bench_models  # noqa: E402
import test_bench_sample  # noqa: E402
import test_bench_softmax  # noqa: E402
import torch  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small inputs, one round (a smoke run)")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--models", action="store_true", help="also time whole-model training steps (slow)")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's, one per core)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    results = []
    results += test_bench_softmax.measure(args.quick)[1]
    results += list(test_bench_sample.measure(args.quick)[1].values())
    results += list(test_bench_gather.measure(args.quick)[1].values())

    # Other work on the machine skews every side (memcpy least: it is one thread), so say how busy it was.
    load = os.getloadavg()[0]
    print(
        f"Machine: {_util.machine()}, load average {load:.1f}; "
        f"zoomkern backends: softmax={_util.backend('softmax_fwd')}, "
        f"sample={_util.backend('sample')}, gather={_util.backend('gather')}."
    )
    print(
        "Ratios are zoomkern's speed over the baseline's (> 1: zoomkern faster), from interleaved "
        "perf_counter medians in one process on the same inputs.\n"
    )
    print(_util.fmt_table(results))
    mem = [
        (r["case"], {k[len("peak_bytes_") :]: v for k, v in r.items() if k.startswith("peak_bytes_")})
        for r in results
    ]
    print("\nPeak extra resident memory (MB) per call:\n")
    print("| case | peak MB by impl |\n|---|---|")
    for case, peaks in mem:
        cells = ", ".join(f"{k} {v / 2**20:.1f}" for k, v in peaks.items() if v is not None)
        print(f"| {case} | {cells} |")
    if args.models:
        model_res = test_bench_models.measure(args.quick)[1]
        print("\nWhole models, one training step:\n")
        print(test_bench_models.fmt_table(model_res))
        results.append(model_res)
        lazy_res = test_bench_lazy.measure(args.quick)[1]
        print("\nLoading a batch plus one training step, collated images against sources:\n")
        print(test_bench_lazy.fmt_table(lazy_res))
        results.append(lazy_res)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
