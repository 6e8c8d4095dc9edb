"""Model FLOPs and MFU: the one count that the trainer's records and ``bench/gpu_check`` share.

A forward costs ``2 N`` FLOPs per token and a backward ``4 N``, where ``N`` is the backbone's
parameters less the input embedding (a table lookup, no multiply). A forward that activation
checkpointing recomputes in the backward is counted as one more forward: it is work the device
does. The attention scores' own FLOPs are left out, as in the usual ``6 N`` per trained token.

The output head is not in ``N``: the sampler and the likelihood apply it to the slots they read
only, not to every token, so ``2 N`` per token would overstate it (and the issue's count of
SDAR-1.7B, 1.4B non-embedding parameters, leaves it out too). Both also skip the last layer's MLP
on unread slots (``dllm/readout.py``), which the count does not see: it overstates a forward by at
most that one MLP's share, under 3% on SDAR-1.7B. MFU is model FLOPs per second over the device's
bf16 dense peak.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # records import this module; they must not pay for torch
    import torch

FORWARD_FLOPS_PER_PARAMETER = 2
BACKWARD_FLOPS_PER_PARAMETER = 4
UNKNOWN = "unknown"  # the MFU where no peak is known (a CPU, a card not in the table)

# bf16 dense tensor-core peaks, FLOP/s, from NVIDIA's data sheets (the sparse figures are twice
# these). The PCIe and NVL parts run at lower clocks and are left out: their MFU is unknown
# rather than measured against the wrong peak.
PEAK_BF16_FLOPS = {
    "H100 SXM": 989e12,
    "H200": 989e12,
    "A100": 312e12,
}
# ``torch.cuda.get_device_name()`` -> table entry; an SXM H100 calls itself "H100 80GB HBM3".
_DEVICE_NAMES = (
    (re.compile(r"\bH100\b(?!.*\b(PCIe|NVL)\b).*\b(SXM|HBM3)", re.I), "H100 SXM"),
    (re.compile(r"\bH200\b(?!.*\bNVL\b)", re.I), "H200"),
    (re.compile(r"\bA100\b", re.I), "A100"),
)


def device_entry(name: str) -> str | None:
    """The peak table's entry for a device called ``name``, or None."""
    return next((entry for pattern, entry in _DEVICE_NAMES if pattern.search(name)), None)


def peak_flops(device: torch.device | str, dtype: torch.dtype | None = None) -> float | None:
    """The bf16 dense peak of ``device`` in FLOP/s; None off CUDA, for a card not in the table,
    or for a ``dtype`` other than bf16 (the table holds no other precision's peak)."""
    import torch

    device = torch.device(device)
    if device.type != "cuda" or (dtype is not None and dtype != torch.bfloat16):
        return None
    entry = device_entry(torch.cuda.get_device_name(device))
    return None if entry is None else PEAK_BF16_FLOPS[entry]


def non_embedding_parameters(model: Any) -> int:
    """``N``: a transformers model's backbone (``base_model``) parameters less its input
    embedding; the output head lies outside the backbone. Sharded (FSDP) parameters count whole."""
    embedding = {id(p) for p in model.get_input_embeddings().parameters()}
    return sum(p.numel() for p in model.base_model.parameters() if id(p) not in embedding)


def forward_flops(parameters: int, tokens: int) -> float:
    return float(FORWARD_FLOPS_PER_PARAMETER * parameters * tokens)


def backward_flops(parameters: int, tokens: int) -> float:
    return float(BACKWARD_FLOPS_PER_PARAMETER * parameters * tokens)


def mfu(flops: float, seconds: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation, or None where the peak is unknown (or no time passed)."""
    if peak is None or seconds <= 0:
        return None
    return flops / seconds / peak
