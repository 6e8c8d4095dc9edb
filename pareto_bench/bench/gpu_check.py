"""The checks that need a GPU, in one run that prints one JSON object (``scripts/gpu-check.sh``).

On an SDAR-1.7B-shaped random model in bf16 (28 layers, hidden 2048, vocabulary 151,936):

- ``decode``: our sampler's tokens/s at block 4 and 32, with the static strategy at 1, 4 and 8
  tokens per forward (a random model is never confident, so TPF is set, not earned), against
  HF ``generate`` autoregressive decoding of the same model and prompts;
- ``rl_step``: one RL step of 16 prompts x 8 trajectories of 1,024 tokens: time and peak GPU memory;
- ``rl_step_all_gpus``: the same step with fsdp on every visible GPU (skipped on one GPU).

Each part is timed and guarded: a failure is reported in the JSON and the next part still runs.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import torch

BATCH = 32
NEW_TOKENS = 256
RL_TOKENS = 1024
RL_GROUPS, RL_GROUP_SIZE = 16, 8
UNFUSED_FLEX = "flex_attention called without torch.compile"


def _prompts(lm, count: int) -> list[list[int]]:
    from pareto_bench.tasks.synthetic import SyntheticTask

    task = SyntheticTask()
    return [lm.encode_prompt(task.prompt(p)) for p in task.load()[:count]]


def _timed(fn) -> tuple[Any, float]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def check_decode(lm, batch_size: int = BATCH, new_tokens: int = NEW_TOKENS) -> dict[str, Any]:
    from pareto_bench.dllm.sampler import aggregate_tpf, generate

    prompts = _prompts(lm, batch_size)
    never = -1  # no EOS: every sequence decodes NEW_TOKENS tokens
    rows = []
    for block in (4, 32):
        for tpf in (1, 4, 8):
            if tpf > block:
                continue

            def run(block=block, tpf=tpf, n=new_tokens):
                return generate(
                    lm.model,
                    prompts,
                    mask_id=lm.mask_id,
                    eos_id=never,
                    block_size=block,
                    threshold=0.0,
                    max_new_tokens=n,
                    strategy="static",
                    steps_per_block=block // tpf,
                )

            run(n=block)  # warm-up
            outs, seconds = _timed(run)
            tokens = sum(len(g.tokens) for g in outs)
            rows.append(
                {
                    "block_size": block,
                    "tokens_per_forward": aggregate_tpf(outs),
                    "tokens_per_s": tokens / seconds,
                    "seconds": seconds,
                }
            )
    batch = (
        torch.nn.utils.rnn.pad_sequence(
            [torch.tensor(p).flip(0) for p in prompts], batch_first=True, padding_value=0
        )
        .flip(1)
        .to(lm.device)
    )  # left-padded for generate
    attention = (batch != 0).long()
    kwargs = dict(
        attention_mask=attention,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=0,
    )
    lm.model.generate(batch, **{**kwargs, "max_new_tokens": 8, "min_new_tokens": 8})  # warm-up
    _, seconds = _timed(lambda: lm.model.generate(batch, **kwargs))
    ar = batch_size * new_tokens / seconds
    for row in rows:
        row["vs_hf_generate"] = row["tokens_per_s"] / ar
    return {
        "batch": batch_size,
        "new_tokens": new_tokens,
        "sampler": rows,
        "hf_generate_tokens_per_s": ar,
    }


def check_rl_step(
    checkpoint: Path,
    out: Path,
    device: str = "cuda",
    tokens: int = RL_TOKENS,
    groups: int = RL_GROUPS,
    group_size: int = RL_GROUP_SIZE,
) -> dict[str, Any]:
    on_gpu = torch.device(device).type == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = _one_rl_step(checkpoint, out, device, tokens, groups, group_size)
    return {
        "trajectories": groups * group_size,
        "tokens": tokens,
        "tpf": record.tpf,
        "step_seconds": record.step_time,
        "rollout_seconds": record.rollout_time,
        "likelihood_seconds": record.likelihood_time,
        "backward_seconds": record.backward_time,
        "likelihood_forwards_per_trajectory": record.likelihood_forwards,
        "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if on_gpu else None,
        "loss": record.loss,
        # FlexAttention must stay compiled: unfused, it holds the full score matrix.
        "flex_ran_unfused": any(UNFUSED_FLEX in str(w.message) for w in caught),
    }


def _one_rl_step(
    checkpoint: Path, out: Path, device: str, tokens: int, groups: int, group_size: int
):
    from pareto_bench.bench.sdar_shaped import SDAR_BLOCK, one_rl_step

    return one_rl_step(
        checkpoint,
        out,
        tokens=tokens,
        tokens_per_forward=8,
        block_size=SDAR_BLOCK,
        groups=groups,
        group_size=group_size,
        overrides=(
            f"device={device}",
            "dtype=bfloat16",
            "optim.micro_batch_size=4",
            "gradient_checkpointing=true",
            "optim.lr=1e-6",
        ),
    )


def check_rl_step_all_gpus(checkpoint: Path, out: Path) -> dict[str, Any]:
    """The same RL step with fsdp on every visible GPU (skipped on one): time and peak memory
    per GPU, from ``bench.distributed_step`` under torchrun."""
    from pareto_bench.bench.distributed_step import launch

    gpus = torch.cuda.device_count()
    if gpus < 2:
        return {"skipped": f"{gpus} GPU visible"}
    settings = [
        "parallel=fsdp",
        "device=auto",
        "dtype=bfloat16",
        f"rollout.prompts_per_step={RL_GROUPS}",
        f"rollout.group_size={RL_GROUP_SIZE}",
        "rollout.steps_per_block=4",
        "optim.micro_batch_size=4",
        "gradient_checkpointing=true",
        "optim.lr=1e-6",
    ]
    ranks = launch(out, checkpoint, RL_TOKENS, gpus, settings, timeout=400)
    return {
        "gpus": gpus,
        "step_seconds": max(r["step_seconds"] for r in ranks),
        "peak_gpu_memory_gb_per_gpu": [r["peak_gpu_memory_gb"] for r in ranks],
        "state_gb_per_gpu": [r["state_gb"]["total"] for r in ranks],
    }


def main() -> None:
    from pareto_bench.bench.sdar_shaped import SDAR_1_7B, write_sdar_shaped_checkpoint
    from pareto_bench.dllm.models import load_model

    result: dict[str, Any] = {"device": None}
    if not torch.cuda.is_available():
        result["error"] = "no CUDA device"
        print(json.dumps(result))
        sys.exit(1)
    result["device"] = torch.cuda.get_device_name()
    result["torch"] = torch.__version__
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        with torch.device("cuda"):  # random init on the GPU: seconds, not minutes
            checkpoint = write_sdar_shaped_checkpoint(Path(tmp) / "sdar-1.7b", shape=SDAR_1_7B)
        result["checkpoint_seconds"] = time.perf_counter() - started
        for name, part in (
            (
                "decode",
                lambda: check_decode(load_model(checkpoint, device="cuda", dtype="bfloat16")),
            ),
            ("rl_step", lambda: check_rl_step(checkpoint, Path(tmp) / "rl")),
        ):
            try:
                result[name] = part()
            except Exception:  # report and go on: one JSON for the whole run
                result[name] = {"error": traceback.format_exc(limit=8)}
            torch.cuda.empty_cache()
            print(json.dumps({name: result[name]}), file=sys.stderr, flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
