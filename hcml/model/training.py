"""The training wrapper: the deployable network plus its training-only side branches.

``HCMLTrainingWrapper(model)`` owns ``model`` (the deployable ``HCMLNet``, unchanged) and, next
to it, the P^0 flow net and the contrastive heads. Nothing has to be removed for export:
``wrapper.deployable()`` is ``wrapper.model``.

The motion hierarchy for the contrastive heads is [P^0, P^{l_1}, P^{l_2}, ...], where P^0 is
the flow net's output (its hidden motion features, or the flow itself with ``p0="flow"``) and
l_1 < l_2 < ... are the network's motion levels; each P^{l_k} gets a head that predicts the entry
below it (resampled to level l_k's grid).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hcml.model.contrastive import ContrastiveHead, contrastive_loss
from hcml.model.flow import FlowLossConfig, FlowNet, reconstruction_loss
from hcml.model.net import HCMLNet, _to_5d
from hcml.model.registry import TRAIN_DEFAULTS

__all__ = ["HCMLTrainingWrapper"]


class HCMLTrainingWrapper(nn.Module):
    """Deployable ``model`` + flow net (P^0) + contrastive heads, for the training loop.

    ``train_cfg`` overrides ``model.default_cfg["train"]`` (keys: see
    ``hcml.model.registry.TRAIN_DEFAULTS``). Side branches are built only when enabled:
    ``flow_net`` when ``flow`` is on, ``heads`` (keyed by level, as strings) when
    ``contrastive`` is on.
    """

    def __init__(self, model: HCMLNet, train_cfg: dict[str, Any] | None = None):
        super().__init__()
        self.model = model
        cfg = dict(TRAIN_DEFAULTS)
        cfg.update(model.default_cfg.get("train", {}))
        cfg.update(train_cfg or {})
        unknown = set(cfg) - set(TRAIN_DEFAULTS)
        if unknown:
            raise TypeError(f"unknown training option(s): {sorted(unknown)}")
        self.train_cfg = cfg
        self.flow_net: FlowNet | None = None
        if cfg["flow"]:
            self.flow_net = FlowNet(
                int(cfg["flow_growth"]),
                int(cfg["flow_scale"]),
                dilation=bool(cfg["flow_dilation"]),
                corr=int(cfg["flow_corr"]),
            )
        self.flow_loss_cfg = FlowLossConfig(
            zeta=float(cfg["zeta"]),
            alpha=float(cfg["charbonnier_alpha"]),
            eps=float(cfg["charbonnier_eps"]),
            census=float(cfg["flow_census"]),
            ssim=float(cfg["flow_ssim"]),
            edge=float(cfg["flow_edge"]),
            scales=int(cfg["flow_scales"]),
            occlusion=bool(cfg["flow_occlusion"]),
        )
        self.heads = nn.ModuleDict()
        if cfg["contrastive"]:
            chain: list[tuple[str, int]] = []
            if self.flow_net is not None:
                c0 = 2 if cfg["p0"] == "flow" else self.flow_net.feature_channels
                chain.append(("p0", c0))
            chain += [(str(lv), c) for lv, c in model.motion_channels().items()]
            for (_, c_low), (hi, c_high) in zip(chain[:-1], chain[1:], strict=True):
                self.heads[hi] = ContrastiveHead(
                    c_high,
                    c_low,
                    int(cfg["deltas"]),
                    int(cfg["contrastive_hidden"]),
                    inputs=str(cfg["contrastive_input"]),
                )
            self._lower = {hi: lo for (lo, _), (hi, _) in zip(chain[:-1], chain[1:], strict=True)}
        else:
            self._lower = {}

    def deployable(self) -> HCMLNet:
        """The network to export: ``self.model`` (no side-branch parameters in it)."""
        return self.model

    def forward(
        self,
        x: Tensor,
        generator: torch.Generator | None = None,
        contrastive_levels: list[int] | None = None,
        flow_only: bool = False,
    ) -> dict[str, Any]:
        """One training forward.

        x [B, 3, T, H, W] (normalized). generator: seeds the contrastive position sampling.
        contrastive_levels: levels whose L_contrastive to compute (default: all with a head).
        flow_only: run the flow net alone (the flow stage): only ``flow`` and ``rec`` are set.

        Returns a dict:

        * ``logits`` [B, K], the deployable network's output for x;
        * ``motion`` {l: P^l [B, C_l / beta, T, h_l, w_l]} for each motion level l;
        * ``features`` [Z^0, ..., Z^{L-1}], each [B, C_l, T, h_l, w_l];
        * with the flow net: ``flow`` [B, 2, T, H/s, W/s] (pair (t, t+1), last self-paired),
          ``p0`` [B, C_0, T, H/s, W/s] (P^0 as used by the level-1 head), ``rec`` {"rec",
          "photometric", "smoothness" (scalars), "mask" [B, 1, T-1, H/s, W/s]};
        * ``contrastive`` {l: scalar L_contrastive^l} (empty without heads).
        """
        if flow_only:
            if self.flow_net is None:
                raise ValueError("flow_only: this wrapper has no flow net")
            return self._flow(x, {})
        zs, ps, t = self.model.forward_levels(x)
        features = [_to_5d(z, t) for z in zs]
        out: dict[str, Any] = {
            "logits": self.model.forward_head(features[-1]),
            "motion": {lv: _to_5d(p, t) for lv, p in ps.items()},
            "features": features,
            "contrastive": {},
        }
        motion_by_key: dict[str, Tensor] = {str(lv): p for lv, p in out["motion"].items()}
        if self.flow_net is not None:
            self._flow(x, out)
            motion_by_key["p0"] = out["p0"]
        wanted = None if contrastive_levels is None else {str(v) for v in contrastive_levels}
        for key, head in self.heads.items():
            if wanted is not None and key not in wanted:
                continue
            out["contrastive"][int(key)] = contrastive_loss(
                head,
                motion_by_key[key],
                motion_by_key[self._lower[key]],
                samples=int(self.train_cfg["samples"]),
                tau=float(self.train_cfg["tau"]),
                generator=generator,
            )
        return out

    def _flow(self, x: Tensor, out: dict[str, Any]) -> dict[str, Any]:
        """Flow net forward + L_rec into ``out`` ("flow", "p0", "rec")."""
        fo = self.flow_net(x, backward=self.flow_loss_cfg.occlusion)
        out["flow"] = fo["flow"]
        out["p0"] = fo["flow"] if self.train_cfg["p0"] == "flow" else fo["features"]
        out["rec"] = reconstruction_loss(
            fo["frames"], fo["flow"], cfg=self.flow_loss_cfg, flow_bw=fo.get("flow_bw")
        )
        return out
