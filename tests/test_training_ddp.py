"""DDP with 2 CPU processes (gloo) gives the same gradients as one process on the merged batch."""

from __future__ import annotations

import gc

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


def _worker(rank: int, store: str, out: str) -> None:
    import torch.distributed as dist

    from hcml.training.stages import SupervisedStage

    # A file store, not TCP: no store server thread on rank 0 and no port picked then released
    # (another test of a full run could take it before rank 0 binds it).
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
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
    # Teardown while the interpreter is fully alive, in an order both ranks share: wait for the
    # peer (gloo aborts a process whose peer closes the pair mid-teardown), drop DDP's reducer
    # (it holds the process group) and collect it, then destroy the group, which shuts gloo's
    # threads down. Left to interpreter finalization, a native thread that needs the GIL is
    # ended by pthread_exit, and its forced unwind through a noexcept frame is
    # "terminate called without an active exception".
    dist.barrier()
    del ddp, loss
    gc.collect()
    dist.destroy_process_group()


def test_ddp_gradients_match_merged_batch(tmp_path):
    from hcml.training.stages import SupervisedStage

    out = str(tmp_path / "grads.pt")
    mp.spawn(_worker, args=(str(tmp_path / "store"), out), nprocs=2, join=True)
    ddp_grads = torch.load(out, weights_only=True)
    torch.manual_seed(0)
    module = StandIn()
    x, y = _data()
    loss, _ = SupervisedStage().loss(module, x, y, None)
    loss.backward()
    for k, p in module.named_parameters():
        torch.testing.assert_close(ddp_grads[k], p.grad, rtol=1e-5, atol=1e-6)
