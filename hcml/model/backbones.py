"""Per-frame 2D backbones that expose their stage outputs F^0..F^{L-1}.

Every backbone has the same small interface, used by ``hcml.model.net.HCMLNet``:

* ``forward_stem(x)``: x [N, 3, H, W] -> [N, C_stem, H', W'] (N = batch x frames);
* ``stages()``: the L stage modules; stage l maps F^{l-1} (or the stem output) to F^l;
* ``channels``: the L stage output channel counts; ``strides``: their strides w.r.t. the input.

Variants: ``tiny`` (the CPU-trainable default), ``resnet18`` and ``resnet50``
(``hcml.model.resnet``, torchvision's definitions, random init).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from hcml.model.resnet import resnet18, resnet50

__all__ = ["TinyBackbone", "BACKBONES", "create_backbone", "conv_bn_relu"]


def conv_bn_relu(c_in: int, c_out: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv(k x k, no bias) + BatchNorm2d + ReLU: [N, c_in, H, W] -> [N, c_out, H/s, W/s]."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class TinyBackbone(nn.Module):
    """A small plain CNN: stem (stride 2) + 4 stages of conv-BN-ReLU.

    At 112 x 112 input: stem 16 ch @ 56; F^0 16 ch @ 56, F^1 32 @ 28, F^2 64 @ 14, F^3 128 @ 7.
    Stage 0 is one 3x3 conv; stages 1-3 are a stride-2 3x3 conv then a 3x3 conv.
    About 82 MFLOP per 112 x 112 frame (see ``hcml.model.complexity``).
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128), stem_width: int = 16):
        super().__init__()
        self.stem = conv_bn_relu(3, stem_width, 3, 2)
        stages = [conv_bn_relu(stem_width, widths[0])]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            stages.append(
                nn.Sequential(conv_bn_relu(c_in, c_out, 3, 2), conv_bn_relu(c_out, c_out))
            )
        self.layers = nn.ModuleList(stages)
        self.channels: list[int] = list(widths)
        self.strides: list[int] = [2 * 2**i for i in range(len(widths))]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_stem(self, x: Tensor) -> Tensor:
        """x [N, 3, H, W] -> [N, stem_width, H/2, W/2]."""
        return self.stem(x)

    def stages(self) -> list[nn.Module]:
        """Stage modules producing F^0..F^3."""
        return list(self.layers)

    def forward(self, x: Tensor) -> Tensor:
        """x [N, 3, H, W] -> F^{L-1} [N, C_{L-1}, H/16, W/16]."""
        x = self.forward_stem(x)
        for stage in self.layers:
            x = stage(x)
        return x


def _resnet(factory: Callable[..., nn.Module]) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        net = factory(num_classes=0)
        net.strides = [4, 8, 16, 32]
        return net

    return build


BACKBONES: dict[str, Callable[[], nn.Module]] = {
    "tiny": TinyBackbone,
    "resnet18": _resnet(resnet18),
    "resnet50": _resnet(resnet50),
}


def create_backbone(name: str) -> nn.Module:
    """A backbone by name (``tiny``, ``resnet18``, ``resnet50``), random init."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}")
    return BACKBONES[name]()
