#!/usr/bin/env bash
# `make demo`: real work on a recorded stream with the shipped model (see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${HCML_DEMO_DIR:-$(mktemp -d -t hcml-demo-XXXX)}"
echo "== rendering two clips a class of the motion benchmark into $out"
hcml synth "$out" --clips-per-class 2 --frames 16 --size 112 --seed 7 --flow
