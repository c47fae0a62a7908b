"""Parallelism and memory savings applied to a single-device DiT from outside, in order:
sequence parallel -> activation checkpointing -> compile -> FSDP2 (torchtitan's layout).

The model file knows nothing of this: sequence parallelism swaps the blocks' parameter-free
attention seam and shards/gathers the video tokens with forward hooks at the block boundary;
activation checkpointing wraps blocks; FSDP2 shards each block and then the root.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist
from torch import nn

from videoforge.train.sequence_parallel import UlyssesAttention, gather_sequence, local_chunk

log = logging.getLogger(__name__)


@dataclass
class ParallelDims:
    """World = dp x sp; the sp ranks of one group are consecutive and see the same samples."""

    world: int = 1
    rank: int = 0
    sp: int = 1
    device: torch.device = torch.device("cpu")
    sp_group: dist.ProcessGroup | None = None
    owns_group: bool = False  # setup_distributed created the process group (and the run should end it)

    @property
    def dp(self) -> int:
        return self.world // self.sp

    @property
    def dp_rank(self) -> int:
        return self.rank // self.sp

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def exit_worker(code: int = 0) -> NoReturn:
    """End a torchrun worker process, skipping the interpreter's teardown.

    After `destroy_process_group`, torch's gloo backend can still abort the process while the
    interpreter shuts down ("terminate called without an active exception", SIGABRT), seen here
    in 1 of 3-6 two-process runs on a busy CPU, after all work and files were done. Exiting
    directly keeps a finished run's exit code honest."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def setup_distributed(sp: int = 1) -> ParallelDims:
    """Join the torchrun process group if there is one (NCCL on GPUs, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world % sp:
        raise ValueError(f"--sp {sp} does not divide the {world} processes")
    if world == 1:
        if sp != 1:
            raise ValueError(f"--sp {sp} needs {sp} processes; launch with torchrun --nproc_per_node {sp}")
        return ParallelDims(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend)
    rank = dist.get_rank()
    groups = [dist.new_group(list(range(g * sp, (g + 1) * sp))) for g in range(world // sp)] if sp > 1 else []
    return ParallelDims(world, rank, sp, device, groups[rank // sp] if groups else None, owns)


def apply_sequence_parallel(model: nn.Module, group: dist.ProcessGroup) -> None:
    """Ulysses over `group`: video tokens sharded from the first block to the last, attention
    through `UlyssesAttention`, gathered again before the final layer."""
    p, r = dist.get_world_size(group), dist.get_rank(group)
    doubles, singles = list(model.double_blocks), list(model.single_blocks)
    if model.config.heads_num % p:
        raise ValueError(f"{model.config.heads_num} heads are not divisible by the sequence-parallel degree {p}")
    for block in doubles + singles:
        block.attn = UlyssesAttention(group)

    def local_rope(rope):
        return tuple(local_chunk(t, group, dim=0) for t in rope)

    def local_first(n_first: int, n_local: int) -> int:
        # I2V: the first-frame tokens are the first n_first of the full sequence.
        return max(0, min(n_local, n_first - r * n_local))

    def double_pre(module, args):
        img, txt, vec, key_mask, rope, *rest = args
        n_local = rope[0].shape[0] // p
        if img.shape[1] == rope[0].shape[0]:  # the first block receives the full sequence
            img = local_chunk(img, group)
        first_vec, n_first = (rest + [None, 0])[:2]
        return (img, txt, vec, key_mask, local_rope(rope), first_vec, local_first(n_first, n_local))

    def single_pre(module, args):
        x, vec, key_mask, rope, n_img, *rest = args
        n_local = n_img // p  # the model passes the full video length
        if x.shape[1] == key_mask.shape[1]:  # no double blocks ran: shard here
            x = torch.cat([local_chunk(x[:, :n_img], group), x[:, n_img:]], 1)
        first_vec, n_first = (rest + [None, 0])[:2]
        return (x, vec, key_mask, local_rope(rope), n_local, first_vec, local_first(n_first, n_local))

    def gather_single(module, args, out):
        n_local = args[4]
        return torch.cat([gather_sequence(out[:, :n_local], group), out[:, n_local:]], 1)

    def gather_double(module, args, out):
        img, txt = out
        return gather_sequence(img, group), txt

    for b in doubles:
        b.register_forward_pre_hook(double_pre)
    for b in singles:
        b.register_forward_pre_hook(single_pre)
    if singles:
        singles[-1].register_forward_hook(gather_single)
    elif doubles:
        doubles[-1].register_forward_hook(gather_double)
    log.info("sequence parallel: Ulysses over %d ranks on %d blocks", p, len(doubles) + len(singles))


def apply_activation_checkpointing(model: nn.Module) -> None:
    """Recompute each block's activations in backward instead of storing them."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    for blocks in (model.double_blocks, model.single_blocks):
        for i, block in enumerate(blocks):
            blocks[i] = checkpoint_wrapper(block, preserve_rng_state=False)
    log.info("activation checkpointing on %d blocks", len(model.double_blocks) + len(model.single_blocks))


def apply_compile(model: nn.Module) -> None:
    """torch.compile each block in place (parameter names stay unchanged)."""
    for blocks in (model.double_blocks, model.single_blocks):
        for block in blocks:
            block.compile()


def apply_fsdp(model: nn.Module, dims: ParallelDims) -> None:
    """FSDP2 over every rank: parameters, gradients and optimizer state sharded per block, then the root."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(dims.device.type, (dims.world,))
    blocks = list(model.double_blocks) + list(model.single_blocks)
    for i, block in enumerate(blocks):
        # The last block's parameters are needed again right away in backward: keep them gathered.
        fully_shard(block, mesh=mesh, reshard_after_forward=i < len(blocks) - 1)
    fully_shard(model, mesh=mesh)
    log.info("FSDP2 over %d ranks (%d blocks + root)", dims.world, len(blocks))


def parallelize_dit(model: nn.Module, dims: ParallelDims, *, activation_checkpointing: bool = False, compile: bool = False) -> nn.Module:
    if dims.sp > 1:
        apply_sequence_parallel(model, dims.sp_group)
    if activation_checkpointing:
        apply_activation_checkpointing(model)
    if compile:
        apply_compile(model)
    if dims.world > 1:
        apply_fsdp(model, dims)
    return model
