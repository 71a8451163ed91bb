"""A toy two-level motion network written the slow, obvious way, to test the streaming machinery.

``ToyMotionNet`` has the structure that ``StepModel`` relies on (per-frame stages, forward-pairing
motion blocks whose last frame pairs with itself, temporal-mean head) but none of ``hcml.model``'s
code, so the step graph's exactness is tested against an independent clip forward that loops over
frames and pairs explicitly. It also exercises export and the backends when no trained model is
around.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hcml.model.step import FrameOp, PairOp, StreamPlan

__all__ = ["ToyMotionNet", "cosine_cost_volume", "exported_toy", "randomize_"]


def cosine_cost_volume(a: Tensor, b: Tensor, d: int = 2, s: int = 1) -> Tensor:
    """a, b [N, C, H, W] -> [N, (2d/s+1)^2, H, W]: cos(a(x), b(x + dx)), zero outside b."""
    a = F.normalize(a, dim=1, eps=1e-6)
    b = F.normalize(b, dim=1, eps=1e-6)
    h, w = a.shape[-2:]
    bp = F.pad(b, (d, d, d, d))
    out = []
    for dy in range(-d, d + 1, s):
        for dx in range(-d, d + 1, s):
            shifted = bp[:, :, d + dy : d + dy + h, d + dx : d + dx + w]
            out.append((a * shifted).sum(1, keepdim=True))
    return torch.cat(out, 1)


class _Motion(nn.Module):
    """Prime-motion-like block: Z_t = F_t + g(conv([cost(F~_t, F~_{t+1}), F~_t]))."""

    def __init__(self, c: int, beta: int = 2, d: int = 2):
        super().__init__()
        r = max(c // beta, 1)
        self.d = d
        self.reduce = nn.Sequential(nn.Conv2d(c, r, 1, bias=False), nn.BatchNorm2d(r), nn.ReLU())
        self.cv_bn = nn.BatchNorm2d((2 * d + 1) ** 2)
        self.conv = nn.Sequential(
            nn.Conv2d(r + (2 * d + 1) ** 2, r, 3, padding=1, bias=False),
            nn.BatchNorm2d(r),
            nn.ReLU(),
        )
        self.g = nn.Conv2d(r, c, 1)

    def pair(self, f_t: Tensor, f_next: Tensor) -> Tensor:
        """One pair: F_t, F_{t+1} [N, C, H, W] -> Z_t [N, C, H, W]."""
        a, b = self.reduce(f_t), self.reduce(f_next)
        cv = F.relu(self.cv_bn(cosine_cost_volume(a, b, self.d)))
        return f_t + self.g(self.conv(torch.cat([cv, a], 1)))

    def forward(self, x: Tensor) -> Tensor:
        """Batched pairing, x [B, n, C, H, W] -> [B, n, C, H, W] (last frame self-paired)."""
        nxt = torch.cat([x[:, 1:], x[:, -1:]], 1)
        n = x.shape[1]
        return self.pair(x.flatten(0, 1), nxt.flatten(0, 1)).unflatten(0, (-1, n))


class ToyMotionNet(nn.Module):
    """Stem -> motion -> stage -> motion -> GAP -> temporal mean -> fc. x [B,3,T,H,W] -> [B,K]."""

    def __init__(self, num_classes: int = 12, frames: int = 8, size: int = 32, width: int = 8):
        super().__init__()
        c1, c2 = width, 2 * width
        self.stem = nn.Sequential(nn.Conv2d(3, c1, 3, 2, 1), nn.BatchNorm2d(c1), nn.ReLU())
        self.m1 = _Motion(c1)
        self.stage = nn.Sequential(nn.Conv2d(c1, c2, 3, 2, 1), nn.BatchNorm2d(c2), nn.ReLU())
        self.m2 = _Motion(c2)
        self.fc = nn.Linear(c2, num_classes)
        self.default_cfg = {
            "name": "toy_motion",
            "num_classes": num_classes,
            "frames": frames,
            "input_size": (3, size, size),
            "mean": (0.45, 0.45, 0.45),
            "std": (0.225, 0.225, 0.225),
            "levels": [0, 1],
        }

    def forward(self, x: Tensor) -> Tensor:
        """Batched clip forward (what gets exported), x [B, 3, T, H, W] -> logits [B, K]."""
        return self.stream_plan().clip_forward(x)

    def reference_forward(self, x: Tensor) -> Tensor:
        """The obvious clip forward: loop over frames and explicit (t, min(t+1, T-1)) pairs."""
        t_len = x.shape[2]
        f = [self.stem(x[:, :, t]) for t in range(t_len)]
        f = [self.m1.pair(f[t], f[min(t + 1, t_len - 1)]) for t in range(t_len)]
        f = [self.stage(v) for v in f]
        f = [self.m2.pair(f[t], f[min(t + 1, t_len - 1)]) for t in range(t_len)]
        pooled = torch.stack([v.mean((2, 3)) for v in f], 1)  # [B, T, C]
        return self.fc(pooled.mean(1))

    def stream_plan(self) -> StreamPlan:
        return StreamPlan(
            ops=[FrameOp(self.stem), PairOp(self.m1), FrameOp(self.stage), PairOp(self.m2)],
            pool=lambda z: z.mean((2, 3)),
            classifier=self.fc,
            modules=[],
        )


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine terms (a fresh BN is an identity),
    so that tests exercise them; returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                    m.bias.copy_(torch.rand(n, generator=g) - 0.5)
    return model.eval()


_EXPORTED: dict[tuple, str] = {}


def exported_toy(window: int = 8, size: int = 32, seed: int = 0) -> str:
    """Path of a model card for an exported ``ToyMotionNet`` (cached for the process)."""
    import tempfile

    from hcml.export.onnx_export import export_model

    key = (window, size, seed)
    if key not in _EXPORTED:
        torch.manual_seed(seed)
        model = randomize_(ToyMotionNet(frames=window, size=size), seed)
        out = tempfile.mkdtemp(prefix="hcml-toy-")
        card = export_model(model, out, f"toy_t{window}", window=window)
        torch.save(model.state_dict(), f"{out}/toy_t{window}.state.pt")
        _EXPORTED[key] = str(card.path)
    return _EXPORTED[key]
