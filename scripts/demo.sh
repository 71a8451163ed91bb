#!/usr/bin/env bash
# `make demo`: render the motion benchmark and print what moved, which way and how fast.
# (Once the shipped model lands, this runs hcmlaction on a recorded stream and prints events.)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${HCML_DEMO_DIR:-$(mktemp -d -t hcml-demo-XXXX)}"
echo "== rendering 2 clips of each of the 12 motion classes into $out (H.264 + ground-truth flow)"
hcml synth "$out" --clips-per-class 2 --frames 16 --size 112 --seed 7 --flow
echo "== dx, dy: mean ground-truth flow in px/frame (x right, y down); div > 0: zooming in;"
echo "   curl > 0: turning clockwise on screen; frame_diff: mean |frame t+1 - frame t| of the decoded video"
