#!/usr/bin/env bash
# Train every ablation recipe, evaluate each on the held-out set, then print the table.
#   bash training/ablation/run_all.sh [HELDOUT_DIR] [RUNS_DIR]
# HELDOUT_DIR (default runs/heldout-s777) is made with
#   hcml synth runs/heldout-s777 --clips-per-class 50 --frames 16 --size 112 --seed 777
# Runs are sequential on purpose: two trainings sharing 2 cores both slow down several-fold.
set -euo pipefail
cd "$(dirname "$0")/../.."
heldout="${1:-runs/heldout-s777}"
runs="${2:-runs}"
[ -d "$heldout" ] || hcml synth "$heldout" --clips-per-class 50 --frames 16 --size 112 --seed 777
for recipe in training/ablation/*.yaml; do
    name="ablation-$(basename "$recipe" .yaml)"
    if [ ! -f "$runs/$name/model.pt" ]; then
        SECONDS=0
        hcml train "$recipe" --out "$runs/$name" --resume --no-progress
        echo "$SECONDS" > "$runs/$name/train_seconds.txt"
        echo "$name: trained in $SECONDS s"
    fi
    [ -f "$runs/$name/heldout.json" ] ||
        hcml eval "$runs/$name/model.pt" "$heldout" --json "$runs/$name/heldout.json" --no-progress
done
python training/ablation/table.py "$runs"
