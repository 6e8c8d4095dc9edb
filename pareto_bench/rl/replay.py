"""The kept trajectories laid out for the block-diffusion likelihood: each as its sequence and
its views (``pareto_bench.dllm.likelihood``), scored micro-batch by micro-batch."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pareto_bench.core.placement import World
from pareto_bench.dllm.likelihood import (
    Scorer,
    block_views,
    forwards_per_row,
    pack,
    trajectory_views,
)
from pareto_bench.dllm.models import DiffusionLM
from pareto_bench.dllm.sampler import Generation
from pareto_bench.rl.config import TrainConfig


class Replay:
    """The kept trajectories laid out for the likelihood: each as its sequence and its views,
    scored in micro-batches of ``optim.micro_batch_size``, each row's response tokens aligned
    to ``[B, T]`` (``T`` the longest response)."""

    def __init__(
        self,
        trajectories: Sequence[tuple[list[int], Generation]],
        config: TrainConfig,
        policy: DiffusionLM,
        block_size: int,
    ) -> None:
        self.block_size = block_size
        self.mask_id = policy.mask_id
        self.max_tokens = config.likelihood.max_tokens_per_forward
        self.attention = config.likelihood.attention
        if self.attention == "auto":
            self.attention = "flex" if policy.device.type == "cuda" else "sdpa"
        self.micro_batch_size = config.optim.micro_batch_size
        self.packed, self.starts, self.lengths = [], [], []
        for prompt_ids, gen in trajectories:
            p = len(prompt_ids)
            if config.likelihood.mode == "trajectory":
                views = trajectory_views(p, gen.step_map, block_size)
            else:
                views = block_views(p, len(gen.tokens), block_size)
            sequence = list(prompt_ids) + list(gen.tokens)
            self.packed.append(pack(sequence, views, block_size=block_size, mask_id=self.mask_id))
            self.starts.append(p)
            self.lengths.append(len(gen.tokens))
        self.width = max(self.lengths, default=0)
        self.token_mask = torch.arange(self.width)[None, :] < torch.tensor(self.lengths)[:, None]

    def micro_batches(self, rows: Sequence[int]) -> list[list[int]]:
        """``rows`` in micro-batches of similar packed length, so that little is padding."""
        by_size = sorted(rows, key=lambda i: (len(self.packed[i].views.ids), self.lengths[i], i))
        size = self.micro_batch_size
        return [by_size[i : i + size] for i in range(0, len(by_size), size)]

    def shares(self, rows: Sequence[int], world: World) -> list[tuple[list[int], bool]]:
        """This rank's micro-batches of ``rows`` (every ``world.size``-th), each with whether it
        is real. Every rank gets as many: the short ones are padded with copies marked unreal."""
        micro = self.micro_batches(rows)
        mine = [(m, True) for m in micro[world.rank :: world.size]]
        count = -(-len(micro) // world.size)
        return mine + [(micro[0], False)] * (count - len(mine))

    def logprobs(
        self, scorer: torch.nn.Module, rows: Sequence[int], *, checkpoint: bool
    ) -> torch.Tensor:
        """``[len(rows), T]`` log-probabilities of the rows' response tokens under ``scorer``."""
        slots = scorer(
            [self.packed[i] for i in rows],
            block_size=self.block_size,
            mask_id=self.mask_id,
            max_tokens_per_forward=self.max_tokens,
            checkpoint=checkpoint,
            attention=self.attention,
        )
        starts = torch.tensor([self.starts[i] for i in rows], device=slots.device)
        at = (starts[:, None] + torch.arange(self.width, device=slots.device)).clamp(
            max=slots.shape[1] - 1
        )
        real = self.token_mask[rows].to(slots.device)
        return torch.where(real, slots.gather(1, at), 0.0)

    def mean_forwards(self) -> float:
        """Forwards per trajectory of one likelihood pass, each trajectory on its own."""
        counts = [
            forwards_per_row(
                row, block_size=self.block_size, max_tokens_per_forward=self.max_tokens
            )
            for row in self.packed
        ]
        return sum(counts) / max(1, len(counts))

    def all_logprobs(
        self, scorer: torch.nn.Module, rows: Sequence[int], device: torch.device
    ) -> torch.Tensor:
        """``[B, T]`` with the log-probabilities of ``rows`` (zeros elsewhere), micro-batch by
        micro-batch, without recomputation."""
        out = torch.zeros((len(self.packed), self.width), device=device)
        for micro in self.micro_batches(sorted(set(rows))):
            logp = self.logprobs(scorer, micro, checkpoint=False)
            out[torch.tensor(micro, device=device)] = logp.to(device, out.dtype)
        return out


def frozen_logprobs(
    reference: Scorer, replay: Replay, rows: Sequence[int], device: torch.device
) -> torch.Tensor:
    """The reference's log-probabilities of ``rows``, moving it to the policy's device for its
    pass when it is parked on the CPU."""
    home = next(reference.parameters()).device
    reference.to(device)
    try:
        return replay.all_logprobs(reference, rows, device)
    finally:
        reference.to(home)
