"""LightningRL: GRPO for block-wise dLLMs with a speed reward, decoupled normalisation,
TPF-aware filtering and an NLL anchor on verifier-correct trajectories (docs/LIGHTNINGRL.md).

- ``config``: ``TrainConfig``, the one typed source of every training default, and ``load_recipe``.
- ``step``: one RL step, top to bottom, with its rewards, advantages, filter and loss.
- ``rollout``: G trajectories per prompt through the sampler, scored while the next ones decode.
- ``replay``: the kept trajectories laid out for the block-diffusion likelihood.
- ``run``: what a training run holds across steps, and how it starts.
- ``trainer``: the loop of steps, with records, checkpoints and evaluations.
- ``distributed``: DDP and FSDP wrapping, gradient sync, full state dicts.
"""
