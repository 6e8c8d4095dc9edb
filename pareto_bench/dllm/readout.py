"""Finishing only the slots whose output is read.

The sampler reads logits at a block's undecided positions, and the likelihood at its target
slots; every other slot of a forward is there for its keys and values. No slot reads another's
last-layer MLP output, so ``last_mlp_at`` runs that MLP (most of a layer's weights) on the read
slots only, and the caller applies the output head to those slots' hidden states alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from transformers import PreTrainedModel


@contextlib.contextmanager
def last_mlp_at(model: PreTrainedModel, read: torch.Tensor | None) -> Iterator[None]:
    """Within it, the last decoder layer's MLP runs on the ``read`` slots only (``[R, Q]`` bool
    over a forward's input slots; None: on none). The other slots' final hidden states are left
    unfinished. A model without ``layers[-1].mlp`` runs in full."""
    layers = getattr(model.base_model, "layers", None)
    mlp = getattr(layers[-1], "mlp", None) if layers else None
    if mlp is None:
        yield
        return
    shapes = []

    def narrow(module, args):
        (hidden,) = args
        shapes.append(hidden.shape)
        return (hidden[read] if read is not None else hidden[:0, :0],)

    def widen(module, args, out):
        full = out.new_zeros(shapes.pop()[:-1] + out.shape[-1:])
        return full if read is None else full.index_put((read,), out)

    handles = [mlp.register_forward_pre_hook(narrow), mlp.register_forward_hook(widen)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
