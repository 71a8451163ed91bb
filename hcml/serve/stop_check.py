"""How long a served Triton takes to stop, with and without sequences left open (docs/SERVING.md,
"Stopping"): ``python -m hcml.serve.stop_check [--instances 1 2] [--sequences 0 3]``.

For each instance count a repository of the card is written; for each number of open sequences
a server is started, that many server-held streams take two steps and are never ended, and
``TritonServer.stop()`` is timed from the SIGTERM to the exit. One line each: exit code,
sequences dropped, seconds, Triton's exit timeout.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

CARD = Path(__file__).resolve().parents[2] / "engines" / "hcml_tiny_motion.json"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--card", type=Path, default=CARD)
    p.add_argument("--instances", type=int, nargs="+", default=[1, 2])
    p.add_argument("--sequences", type=int, nargs="+", default=[0, 3])
    args = p.parse_args(argv)

    from hcml.backends import load_backend
    from hcml.export.triton_repo import write_triton_repo
    from hcml.serve.server import TritonServer, free_port

    for instances in args.instances:
        with tempfile.TemporaryDirectory(prefix="hcml-stop-") as tmp:
            write_triton_repo(args.card, tmp, instances=instances, threads=1)
            for n in args.sequences:
                server = TritonServer(tmp, free_port(), free_port(), free_port())
                server.start(timeout=300)
                if n:
                    b = load_backend(args.card, backend="triton", server=server.grpc_url)
                    h, w = b.card.input_size
                    state = b.init_state(n)
                    for _ in range(2):
                        _, state = b.run_step(np.zeros((n, 3, h, w), np.float32), state)
                t = time.monotonic()
                rc = server.stop()
                print(
                    f"instances {instances}, open sequences {n}: exit {rc}, dropped "
                    f"{server.dropped}, stop {time.monotonic() - t:.2f} s "
                    f"(exit timeout {server.exit_timeout_s} s)",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
