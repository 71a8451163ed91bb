#!/usr/bin/env python3
"""GPU check for a bare NVIDIA machine: torch with CUDA and onnxruntime, nothing else installed.

Run from the repository root (no pip install):

    PYTHONPATH=. PYTHONUNBUFFERED=1 python scripts/device_check.py --out benchmarks/device.json

Checks (see hcml/bench/device_checks.py): the torch CUDA backend's clip and step graphs against
the CPU (1e-3), CUDA graphs (torch.compile reduce-overhead) against eager and their step time,
the stream engine fed by CUDA frames (host copies counted with the CUDA profiler), throughput and
streams at 30 fps per GPU at batch 1/8/32/128, and the GPU / driver / versions. Every check is
fail-soft; the JSON is rewritten after each one. ``--quick`` shortens every measurement;
``--device cpu`` is a dry run of every check on the CPU with tiny sizes (no GPU numbers).
Render it: ``hcml bench device --from-json benchmarks/device.json --markdown BENCHMARKS.md``.
Exit status: 0 all checks passed, 1 some failed or were skipped for time (the JSON says which),
2 bad arguments.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # PYTHONPATH=. is the documented way; this makes it optional
    sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "device.json",
                   help="the JSON to write (default benchmarks/device.json)")  # fmt: skip
    p.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (a dry run)")
    p.add_argument("--quick", action="store_true", help="shorter measurements, fewer streams")
    p.add_argument("--card", type=Path, default=None, help="model card (default: the shipped)")
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds after which what is left is skipped (default 240; quick 150)",
    )
    args = p.parse_args(argv)
    if not (args.device == "cpu" or args.device.startswith("cuda")):
        print(f"device_check: unknown device {args.device!r}; use cuda, cuda:N or cpu",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.card is not None and not args.card.is_file():
        print(f"device_check: model card not found: {args.card}", file=sys.stderr)
        return 2

    from hcml.bench.device_checks import Sizes, run_checks

    sizes = Sizes.for_run(not args.device.startswith("cuda"), args.quick)
    if args.budget is not None:
        sizes.budget_s = args.budget
    command = "PYTHONPATH=. python scripts/device_check.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    result = run_checks(
        args.device, args.quick, args.card, args.out, sizes, command=command.strip()
    )
    n = {k: result.get(k, 0) for k in ("passed", "failed", "skipped", "total_seconds")}
    print(f"device_check: {n['passed']} passed, {n['failed']} failed, {n['skipped']} skipped "
          f"in {n['total_seconds']} s; wrote {args.out}", flush=True)  # fmt: skip
    if "error" in result:
        print(f"device_check: {result['error']}", file=sys.stderr)
    complete = result.get("failed", 1) == 0 and result.get("skipped", 1) == 0
    return 0 if complete and "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
