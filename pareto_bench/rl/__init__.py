"""LightningRL: GRPO for block-wise dLLMs with a speed reward, decoupled normalisation,
TPF-aware filtering and an NLL anchor on verifier-correct trajectories (``LIGHTNINGRL.md``).

Modules, each owning one thing:

- ``config``: ``TrainConfig``, the one typed source of every training default, and ``load_recipe``.
- ``rewards``: accuracy and speed rewards, normalised per reward within prompt groups.
- ``advantages``: rewards -> advantages (batch, group or group-centred), broadcast to tokens.
- ``filtering``: the group filter and the refill loop that keeps the batch full.
- ``losses``: clipped surrogate, KL estimators, NLL, reductions, and the combined loss.

Shape convention shared by ``rewards``, ``advantages`` and ``filtering``: per-trajectory values
are ``[num_groups, G]`` tensors, row i holding prompt i's G trajectories. ``.reshape(-1)`` gives
the group-major ``[B]`` order (``B = num_groups * G``) used by the ``[B, T]`` token tensors of
``losses``.
"""
