"""Training over several processes (a ``placement.World``): how the policy is shared.

``parallel``: ``none`` (one process), ``ddp`` (``DistributedDataParallel``: every rank holds the
whole model, gradients are all-reduced) or ``fsdp`` (FSDP2 ``fully_shard``, with compute in the
compute dtype and fp32 reduction; see ``wrap`` for why it is one unit). ``auto`` is ``none`` for one
process, else ``fsdp`` on GPUs and ``ddp`` on CPUs.

Both DDP and FSDP average gradients over ranks; the trainer scales each rank's loss by the world
size so that the update is the sum over the global batch, as on one process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pareto_bench.core.placement import World

# State-dict keys of a likelihood.Scorer start with its attribute ``model``.
SCORER_PREFIX = "model."


def resolve_parallel(parallel: str, world: World, device: torch.device) -> str:
    if parallel != "auto":
        if parallel == "none" and world.distributed:
            raise ValueError(
                f"parallel=none with {world.size} processes: use parallel=ddp or fsdp (or auto)"
            )
        return parallel
    if not world.distributed:
        return "none"
    return "fsdp" if device.type == "cuda" else "ddp"


def wrap(module: nn.Module, parallel: str, world: World, compute_dtype: torch.dtype) -> nn.Module:
    """``module`` (a ``likelihood.Scorer``) ready for distributed training."""
    if parallel == "none":
        return module
    if parallel == "ddp":
        device = next(module.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    # One FSDP unit for the whole policy: the likelihood calls every decoder layer several times
    # per micro-batch (the clean pass, then the view forwards), and a per-layer unit reshards
    # after its first use's backward while later uses still need its weights. So the compute
    # copy of the weights is gathered for a micro-batch's forward and backward, and freed after;
    # the fp32 weights, gradients and AdamW state (16 bytes a parameter) stay sharded.
    policy = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
    fully_shard(module, mp_policy=policy)
    return module


@contextlib.contextmanager
def no_gradient_sync(module: nn.Module, skip: bool) -> Iterator[None]:
    """Accumulate this backward's gradients locally when ``skip`` (every micro-batch but the last)."""
    if not skip:
        yield
    elif isinstance(module, nn.parallel.DistributedDataParallel):
        with module.no_sync():
            yield
    elif hasattr(module, "set_requires_gradient_sync"):
        module.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            module.set_requires_gradient_sync(True)
    else:
        yield


def sync_weights(decoder: nn.Module, scorer: nn.Module) -> None:
    """Copy the sharded policy's full weights into ``decoder``, the plain copy that decodes
    rollouts and evaluations under FSDP: ranks decode different numbers of forwards, which
    sharded layers (one all-gather per forward) cannot do."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(scorer, options=StateDictOptions(full_state_dict=True))
    decoder.load_state_dict({k.removeprefix(SCORER_PREFIX): v for k, v in state.items()})


def full_state_dicts(
    module: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The whole model's and optimizer's state on the CPU of rank 0 (empty elsewhere); model keys
    without the Scorer's prefix and without tied duplicates (a tied ``lm_head.weight``)."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(module, options=options)
    optimizer_state = get_optimizer_state_dict(module, optimizer, options=options)
    canonical = {name for name, _ in module.named_parameters()} | {
        name for name, _ in module.named_buffers()
    }
    unwrapped = {name.removeprefix("module.") for name in canonical}
    return (
        {k.removeprefix(SCORER_PREFIX): v for k, v in model_state.items() if k in unwrapped},
        optimizer_state,
    )


def load_optimizer_state(
    module: nn.Module, optimizer: torch.optim.Optimizer, path: Path, world: World
) -> None:
    """Rank 0 reads the full optimizer state and every rank takes its part (any world size)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    state = torch.load(path, weights_only=True) if world.is_main or not world.distributed else {}
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=world.distributed)
    set_optimizer_state_dict(module, optimizer, state, options=options)
