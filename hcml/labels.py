"""The motion benchmark's label set (``shared/MOTION_BENCH.md``): names in class-id order."""

from __future__ import annotations

LABELS: tuple[str, ...] = (
    "static",
    "move_left",
    "move_right",
    "move_up",
    "move_down",
    "rotate_cw",
    "rotate_ccw",
    "zoom_in",
    "zoom_out",
    "approach",
    "separate",
    "flip_upside_down",
)

# Each class's time-reversed twin (a class that is its own twin maps to itself).
REVERSAL_TWIN: dict[str, str] = {
    "static": "static",
    "move_left": "move_right",
    "move_right": "move_left",
    "move_up": "move_down",
    "move_down": "move_up",
    "rotate_cw": "rotate_ccw",
    "rotate_ccw": "rotate_cw",
    "zoom_in": "zoom_out",
    "zoom_out": "zoom_in",
    "approach": "separate",
    "separate": "approach",
    "flip_upside_down": "flip_upside_down",
}

# Horizontal mirroring swaps these labels (used by direction-safe augmentation).
HFLIP_SWAP: dict[str, str] = {
    "move_left": "move_right",
    "move_right": "move_left",
    "rotate_cw": "rotate_ccw",
    "rotate_ccw": "rotate_cw",
}
