"""DDP with 2 CPU processes (gloo) gives the same gradients as one process on the merged batch."""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp
from torch import nn


class StandIn(nn.Module):
    """x [B, 3, T, H, W] -> logits [B, 12]; no BatchNorm, so the loss is per-sample separable."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 12)

    def forward(self, x, generator=None, contrastive_levels=None):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3, 4)))


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, 4, 8, 8, generator=g), torch.arange(8) % 12


def _worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from hcml.training.stages import SupervisedStage

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    module = StandIn()
    stage = SupervisedStage()
    stage.setup(module)
    ddp = nn.parallel.DistributedDataParallel(module)
    x, y = _data()
    loss, _ = stage.loss(ddp, x[rank * 4 : rank * 4 + 4], y[rank * 4 : rank * 4 + 4], None)
    loss.backward()
    if rank == 0:
        torch.save({k: p.grad for k, p in module.named_parameters()}, out)
    # both ranks leave together: gloo aborts a process whose peer closes the pair mid-teardown
    dist.barrier()
    dist.destroy_process_group()


def test_ddp_gradients_match_merged_batch(tmp_path):
    from hcml.training.stages import SupervisedStage

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "grads.pt")
    mp.spawn(_worker, args=(port, out), nprocs=2, join=True)
    ddp_grads = torch.load(out, weights_only=True)
    torch.manual_seed(0)
    module = StandIn()
    x, y = _data()
    loss, _ = SupervisedStage().loss(module, x, y, None)
    loss.backward()
    for k, p in module.named_parameters():
        torch.testing.assert_close(ddp_grads[k], p.grad, rtol=1e-5, atol=1e-6)
