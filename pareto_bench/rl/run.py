"""What a training run holds across its steps, and how it starts: the policy (fp32 master
weights) and the optimizer, the decoder of its rollouts, the frozen KL reference, the training
task's problems, and the processes of the run."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from pareto_bench.core.placement import World, autocast, resolve_device, resolve_dtype
from pareto_bench.dllm.likelihood import Scorer
from pareto_bench.dllm.models import DiffusionLM, load_model
from pareto_bench.rl.config import TrainConfig
from pareto_bench.rl.distributed import resolve_parallel, sync_weights, wrap
from pareto_bench.tasks.base import (
    Problem,
    Task,
    get_task,
    resolve_data_dir,
    training_task_name,
)


@dataclass
class TrainingRun:
    """Everything a training run holds across steps."""

    config: TrainConfig
    world: World
    compute_dtype: torch.dtype
    policy: DiffusionLM  # fp32 master weights; its model is also inside ``scorer``
    scorer: torch.nn.Module  # Scorer(policy.model), wrapped for DDP or FSDP when distributed
    decoder: DiffusionLM  # decodes rollouts and evaluations: the policy, or under FSDP a full copy
    reference: Scorer | None  # the frozen KL reference, in the compute dtype
    optimizer: torch.optim.Optimizer
    eval_task: Task
    task: Task
    problems: Sequence[Problem]
    budget: int

    @classmethod
    def start(cls, config: TrainConfig, checkpoint: Path | None) -> TrainingRun:
        world = World.from_env()
        device = resolve_device(config.device)
        world.start(device)
        compute_dtype = resolve_dtype(config.dtype, device)
        parallel = resolve_parallel(config.parallel, world, device)
        task = get_task(training_task_name(config.task))
        problems = task.load(resolve_data_dir(config.data_dir))  # before the model: fail fast
        # The trained weights stay fp32 (master weights); forwards run under autocast or FSDP's
        # mixed precision in the compute dtype.
        policy = load_model(checkpoint or config.model, device=device, dtype="float32")
        policy.model.train()
        decoder = policy
        if parallel == "fsdp":
            decoder = load_model(checkpoint or config.model, device=device, dtype=compute_dtype)
        scorer = wrap(Scorer(policy.model), parallel, world, compute_dtype)
        reference = _load_reference(config, device, compute_dtype)
        optim = config.optim
        return cls(
            config=config,
            world=world,
            compute_dtype=compute_dtype,
            policy=policy,
            scorer=scorer,
            decoder=decoder,
            reference=None if reference is None else Scorer(reference.model),
            optimizer=torch.optim.AdamW(
                scorer.parameters(),
                lr=optim.lr,
                betas=optim.betas,
                weight_decay=optim.weight_decay,
            ),
            eval_task=get_task(config.task),
            task=task,
            problems=problems,
            budget=config.rollout.max_new_tokens or task.max_new_tokens,
        )

    @property
    def device(self) -> torch.device:
        return self.policy.device

    def sync_decoder(self) -> None:
        """Bring the decoder up to the policy's weights (a no-op when it is the policy)."""
        if self.decoder is not self.policy:
            sync_weights(self.decoder.model, self.scorer)

    def decoding(self) -> contextlib.AbstractContextManager:
        """The decoder in eval mode, under autocast."""
        return _decoding(self.decoder.model, self.autocast())

    def autocast(self):
        return autocast(self.device, self.compute_dtype)


def _load_reference(
    config: TrainConfig, device: torch.device, dtype: torch.dtype
) -> DiffusionLM | None:
    """The frozen KL reference (the initial policy), only when the KL term is on: in the compute
    dtype, on the policy's device or parked on the CPU (``loss.reference_device``)."""
    if config.loss.kl_beta <= 0:
        return None
    home = torch.device("cpu") if config.loss.reference_device == "cpu" else device
    reference = load_model(config.model, device=home, dtype=dtype)
    reference.model.eval().requires_grad_(False)
    reference.name = f"{reference.name}-reference"
    return reference


@contextlib.contextmanager
def _decoding(model: torch.nn.Module, precision: contextlib.AbstractContextManager):
    model.eval()
    try:
        with precision:
            yield
    finally:
        model.train()
