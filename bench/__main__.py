"""`python -m bench [--quick] [--only NAME ...]`: every benchmark, one markdown table."""

from __future__ import annotations

import argparse
import importlib
import time

from bench.timing import Row, machine

BENCHES = ("supernet", "data", "controller", "inference", "memory", "video", "runtime",
           "training", "trials", "realtime")


def table(rows: list[Row]) -> str:
    lines = ["| bench | what | value | unit | note |", "| --- | --- | ---: | --- | --- |"]
    for r in rows:
        value = f"{r.value:,.1f}" if abs(r.value) >= 100 else f"{r.value:.3g}"
        lines.append(f"| {r.bench} | {r.what} | {value} | {r.unit} | {r.note} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller sizes")
    parser.add_argument("--only", nargs="+", choices=BENCHES, default=list(BENCHES))
    args = parser.parse_args()
    rows: list[Row] = []
    t0 = time.perf_counter()
    for name in args.only:
        print(f"running {name} ...", flush=True)
        rows += importlib.import_module(f"bench.{name}").run(args.quick)
    print(f"\n{machine()}; {time.perf_counter() - t0:.0f}s\n")
    print(table(rows))


if __name__ == "__main__":
    main()
