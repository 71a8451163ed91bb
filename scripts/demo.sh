#!/usr/bin/env bash
# `make demo`: run hcmlaction with the shipped model on recorded streams and print its predictions.
set -euo pipefail
cd "$(dirname "$0")/.."
card="${HCML_DEMO_MODEL:-engines/hcml_tiny_motion.json}"
out="${HCML_DEMO_DIR:-$(mktemp -d -t hcml-demo-XXXX)}"
mkdir -p "$out"
tour=tests/data/motion_tour_112.mp4
if [ ! -f "$card" ]; then
    echo "demo: no model card at $card (train one: hcml train training/default.yaml, then hcml export)" >&2
    exit 2
fi
echo "== 1. filesrc ! decodebin ! videoconvert ! hcmlaction ! hcmloverlay ! x264enc ! mp4mux"
echo "   on $tour: 24 recorded segments of 16 frames (25 fps), one motion class each,"
echo "   the 12 classes in order, twice. One prediction every 16 frames (window: 8 frames, step 2)."
hcml run "$tour" --model "$card" --set stride=16 --events "$out/tour.jsonl" \
    --overlay "$out/tour_annotated.mp4" --quiet
python scripts/demo_score.py "$out/tour.jsonl" --segment-frames 16 --fps 25
echo
echo "== 2. the same element on a real street recording (tests/data/vtest_pedestrians_768x576.mp4);"
echo "   the model knows only the 12 synthetic motions, so read these as 'which motion is closest'."
hcml run tests/data/vtest_pedestrians_768x576.mp4 --model "$card" --set stride=10 \
    --events "$out/street.jsonl"
echo
echo "== 3. per-person actions on the same street recording: hcmldetect (OpenCV's HOG people"
echo "   detector every 3rd frame + an IoU tracker) attaches a box and track id per person;"
echo "   hcmlaction classifies each person's crop on its own window (object_id, box in the lines);"
echo "   hcmloverlay draws each box with its id and label."
hcml run tests/data/vtest_pedestrians_768x576.mp4 --model "$card" --detect hog --detect-interval 3 \
    --set stride=4 --events "$out/street_objects.jsonl" --overlay "$out/street_objects.mp4"
echo
echo "events (JSON lines): $out/tour.jsonl $out/street.jsonl $out/street_objects.jsonl"
echo "annotated video:     $out/tour_annotated.mp4 $out/street_objects.mp4 (boxes, per-person labels)"
