"""The sharding a DistributedDataParallel rank trains on (pipeline.distributed.World)."""

from __future__ import annotations

import pytest
import torch

from pipeline.distributed import World, backend_for, rank_device
from pipeline.errors import ConfigError


def test_the_shards_of_an_epoch_cover_every_row_in_equal_shares() -> None:
    n = 333
    shards = [World(rank, 2, seed=7, device=torch.device("cpu")).shard(epoch=4, n=n) for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 167, "padded to equal shares: the ranks run as many batches"
    assert set(torch.cat(shards).tolist()) == set(range(n))
    again = World(0, 2, seed=7, device=torch.device("cpu")).shard(epoch=4, n=n)
    assert torch.equal(again, shards[0]), "an epoch's shard is a function of seed and epoch (resumable)"
    assert not torch.equal(World(0, 2, seed=7, device=torch.device("cpu")).shard(epoch=5, n=n), shards[0])


def test_the_global_batch_is_the_configured_batch_size() -> None:
    assert World(0, 2, 0, torch.device("cpu")).rank_batch_size(64) == 32
    assert World(0, 3, 0, torch.device("cpu")).rank_batch_size(64) == 22
    assert World(0, 4, 0, torch.device("cpu")).rank_batch_size(2) == 1


def test_each_cuda_rank_needs_its_own_gpu() -> None:
    assert rank_device(torch.device("cpu"), 3) == torch.device("cpu")
    assert backend_for(torch.device("cpu")) == "gloo"
    assert backend_for(torch.device("cuda", 0)) == "nccl"
    with pytest.raises(ConfigError, match="one process per GPU"):
        rank_device(torch.device("cuda"), torch.cuda.device_count())
