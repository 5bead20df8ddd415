"""Run every benchmark and print one table: ``python -m benchmarks [--quick] [--only NAME]``."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

MODULES = (
    "rpc_bench",
    "own_work",
    "registry_bench",
    "alternatives_bench",
    "rigs_bench",
    "cluster_bench",
    "brokers_bench",
)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if value >= 10 else f"{value:.3g}"
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    parser.add_argument("--only", choices=MODULES, help="run one benchmark module")
    options = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for name in MODULES:
        if options.only and name != options.only:
            continue
        module = importlib.import_module(f"benchmarks.{name}")
        rows.extend(module.run(quick=options.quick))
    headers = ("benchmark", "measured", "raw pyzmq", "unit", "ratio", "target")
    table = [
        (
            r["name"],
            _format(r["measured"]),
            _format(r["raw"]),
            r["unit"],
            "-" if r["ratio"] is None else f"{r['ratio']:.2f}x",
            r["target"],
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in table)) for i, h in enumerate(headers)]
    print(" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for line in table:
        print(" | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))


if __name__ == "__main__":
    main()
