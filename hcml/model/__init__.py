"""hcml.model: the HCML network, its baselines, training-only side branches, and helpers.

* ``create_model(name, num_classes=12, frames=16, **overrides)`` / ``list_models()``: the
  registry (``hcml.model.registry``); the model's config is ``model.default_cfg``.
* ``HCMLNet`` (``hcml.model.net``): x [B, 3, T, H, W] -> logits [B, K]; ``forward_features``
  / ``forward_head`` / ``forward_levels`` / ``stream_plan``.
* ``HCMLTrainingWrapper`` (``hcml.model.training``): the net plus the P^0 flow net and the
  contrastive heads; ``.deployable()`` is the net.
* building blocks: ``CostVolume``, ``PrimeMotionBlock``, ``MotionFusion``, ``FlowNet``,
  ``ContrastiveHead``; ``hcml.model.checkpoint``; ``hcml.model.complexity``.

See docs/MODEL.md.
"""

from hcml.model.contrastive import ContrastiveHead, contrastive_loss, info_nce
from hcml.model.cost_volume import CostVolume, cost_volume
from hcml.model.flow import FlowNet
from hcml.model.motion import MotionFusion, PrimeMotionBlock
from hcml.model.net import HCMLNet
from hcml.model.registry import create_model, default_cfg, is_model, list_models, register_model
from hcml.model.training import HCMLTrainingWrapper

__all__ = [
    "ContrastiveHead",
    "CostVolume",
    "FlowNet",
    "HCMLNet",
    "HCMLTrainingWrapper",
    "MotionFusion",
    "PrimeMotionBlock",
    "contrastive_loss",
    "cost_volume",
    "create_model",
    "default_cfg",
    "info_nce",
    "is_model",
    "list_models",
    "register_model",
]
