"""The game that ``hcml game-server`` streams: a scene that plays one motion class at a time.

Renders a small scene with the motion benchmark's sprites (``hcml.data.synth``: the same
backgrounds, shapes, textures and per-frame motion ranges) in which one action plays at a time:
a sprite moves, rotates, zooms, flips, two sprites approach or separate, or nothing moves. The
action changes on a schedule drawn from a seed (``class_schedule``: each class once per round of
12, in a seeded order). A moving sprite that reaches the edge respawns whole at the opposite
edge; a zoom, approach or separation that runs out of room restarts. numpy only; the sender
(GStreamer) is ``hcml.gst.game_server``.
"""

from __future__ import annotations

import numpy as np

from hcml.labels import LABELS

__all__ = ["GameScene", "class_schedule"]


def class_schedule(seed: int):
    """Endless class ids: each round of 12 is a seeded permutation; no class follows itself."""
    rng = np.random.default_rng([seed, 0])
    last = -1
    while True:
        order = rng.permutation(len(LABELS))
        if order[0] == last:
            order = np.roll(order, -1)
        yield from (int(c) for c in order)
        last = int(order[-1])


class GameScene:
    """A persistent scene (background + three sprites) that plays one motion class at a time.

    ``start(class_id, rng)`` places the sprites and draws the segment's motion (speeds in the
    benchmark's per-frame ranges, scaled by size / 112); ``frame()`` renders the current frame
    (uint8 [S, S, 3] RGB) and advances the motion by one frame.
    """

    def __init__(self, size: int, seed: int):
        # the benchmark renderer's own pieces (imported here: it pulls in torch)
        from hcml.data.synth import SUPERSAMPLE, _background, _new_object

        rng = np.random.default_rng([seed, 1])
        self.size, self.k = size, size / 112.0
        self.background, _ = _background(rng, size)
        mean = self.background.reshape(-1, 3).mean(0)
        self.looks = [_new_object(rng, mean) for _ in range(3)]  # player, partner, distractor
        sub = (np.arange(size * SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
        self._yy, self._xx = np.meshgrid(sub, sub, indexing="ij")
        self._ss = SUPERSAMPLE

    def _sprite(self, look: int, rng, r: float, margin: float | None = None) -> dict:
        m = r + 2.0 if margin is None else margin
        cx, cy = rng.uniform(m, self.size - m, size=2)
        return dict(look=look, cx=cx, cy=cy, r=r, angle=rng.uniform(0, 2 * np.pi), flip=1.0)

    def start(self, class_id: int, rng: np.random.Generator) -> None:
        s, k = self.size, self.k
        self.name, self.t, self.rng = LABELS[class_id], 0, rng
        self.sigma = float(rng.uniform(0.0, 3.0))
        name = self.name
        main = self._sprite(0, rng, rng.uniform(0.09, 0.15) * s)
        self.sprites = [main]
        if name == "static":
            self.home = (main["cx"], main["cy"])
        elif name.startswith("move_"):
            v = rng.uniform(1.0, 4.0) * k
            self.velocity = {"move_left": (-v, 0), "move_right": (v, 0),
                             "move_up": (0, -v), "move_down": (0, v)}[name]  # fmt: skip
        elif name.startswith("rotate_"):
            self.omega = np.deg2rad(rng.uniform(3.0, 12.0)) * (1 if name == "rotate_cw" else -1)
        elif name.startswith("zoom_"):
            self.rate = rng.uniform(0.02, 0.06)
            self.r_range = (0.1 * s, 0.33 * s)
            self.sprites = [self._sprite(0, rng, rng.uniform(*self.r_range), 0.33 * s)]
        elif name in ("approach", "separate"):
            r = rng.uniform(0.07, 0.11, size=2) * s
            a = np.pi / 4 * (2 * rng.integers(4) + 1) + rng.uniform(-0.25, 0.25)  # diagonal-ish:
            self.axis = np.array([np.cos(a), np.sin(a)])  # the most room to move along
            self.mid = s / 2 + rng.uniform(-0.03, 0.03, size=2) * s
            self.speeds = rng.uniform(1.0, 3.0, size=2) * k
            gap = rng.uniform(2.0, 6.0) * k
            self.near = (r.sum() + gap) * r / r.sum()
            self.far = np.maximum([self._reach(-self.axis, r[0]), self._reach(self.axis, r[1])],
                                  self.near + 4 * k)  # fmt: skip
            self.dist = rng.uniform(self.near, self.far)
            self.sprites = [self._sprite(0, rng, r[0]), self._sprite(1, rng, r[1])]
            self._place_pair()
        elif name == "flip_upside_down":
            self.flip_frames = rng.uniform(7.5, 15.0)  # one turn-over, as in a benchmark clip
        if name != "static" and rng.random() < 0.5:  # the slow distractor, drawn first
            d = self._sprite(2, rng, rng.uniform(0.05, 0.08) * s)
            a, v = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.9) * k
            d["v"] = (v * np.cos(a), v * np.sin(a))
            self.sprites.insert(0, d)

    def _reach(self, u: np.ndarray, r: float) -> float:
        """How far from the midpoint along u a sprite of radius r stays inside the frame."""
        lims = [((self.size - r - m) if c > 0 else (r - m)) / c
                for m, c in zip(self.mid, u, strict=True) if abs(c) > 1e-6]  # fmt: skip
        return float(min(lims))

    def _place_pair(self) -> None:
        for sprite, sign, d in zip(self.sprites[-2:], (-1, 1), self.dist, strict=True):
            sprite["cx"], sprite["cy"] = self.mid + sign * d * self.axis

    def _move(self, sprite: dict, dx: float, dy: float) -> None:
        """Translate; a sprite that reaches the edge respawns at the opposite edge, whole."""
        lo, hi = sprite["r"] + 2.0, self.size - sprite["r"] - 2.0
        for key, d in (("cx", dx), ("cy", dy)):
            x = sprite[key] + d
            sprite[key] = lo if x > hi else hi if x < lo else x

    def _advance(self) -> None:
        self.t += 1
        name, main = self.name, self.sprites[-1]
        for sprite in self.sprites:
            if "v" in sprite:
                self._move(sprite, *sprite["v"])
        if name == "static":
            jitter = self.rng.uniform(-0.15, 0.15, size=2)
            main["cx"], main["cy"] = self.home[0] + jitter[0], self.home[1] + jitter[1]
        elif name.startswith("move_"):
            self._move(main, *self.velocity)
        elif name.startswith("rotate_"):
            main["angle"] += self.omega
        elif name.startswith("zoom_"):
            lo, hi = self.r_range
            main["r"] *= (1 + self.rate) if name == "zoom_in" else 1 / (1 + self.rate)
            if not lo <= main["r"] <= hi:  # respawn at the other end of the range
                main["r"] = lo if name == "zoom_in" else hi
        elif name in ("approach", "separate"):
            step = -self.speeds if name == "approach" else self.speeds
            self.dist = self.dist + step
            if name == "approach" and np.any(self.dist <= self.near):
                self.dist = self.far.copy()
            elif name == "separate" and np.any(self.dist >= self.far):
                self.dist = self.near.copy()
            self._place_pair()
        elif name == "flip_upside_down":
            main["flip"] = float(np.cos(np.pi * self.t / self.flip_frames))

    def frame(self) -> np.ndarray:
        """Render the current frame (uint8 [S, S, 3]) and advance by one frame."""
        from hcml.data.synth import _Object, _pose

        canvas = self.background.copy()
        for sp in self.sprites:
            pose = _pose(1, sp["cx"], sp["cy"], sp["r"], sp["angle"], sp["flip"])
            obj = _Object(**self.looks[sp["look"]], **pose)
            u, v = obj.local_coords(self._xx, self._yy, 0)
            mask = obj.inside(u, v)
            canvas[mask] = obj.colour(u[mask], v[mask])
        s, ss = self.size, self._ss
        img = canvas.reshape(s, ss, s, ss, 3).mean((1, 3))
        if self.sigma > 0:
            img = img + self.rng.normal(0, self.sigma, size=img.shape)
        self._advance()
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)
