"""The checks that need a GPU, in one run that prints one JSON object (``scripts/gpu-check.sh``).

On an SDAR-1.7B-shaped random model in bf16 (28 layers, hidden 2048, vocabulary 151,936):

- ``decode``: our sampler's tokens/s at block 4 and 32, with the static strategy at 1, 4 and 8
  tokens per forward (a random model is never confident, so TPF is set, not earned), against
  HF ``generate`` autoregressive decoding of the same model and prompts; and the sampler's time
  per forward against a bare backbone forward of the same shape (batch 32, one block of new
  tokens after the decode's mean context), which is its floor;
- ``rl_step``: one RL step of 16 prompts x 8 trajectories of 1,024 tokens, after a small
  warm-up step (compiles, allocator): per phase (rollout, the KL reference's pass, the
  likelihood's forwards, backward, optimizer) its time, model FLOPs, MFU against the device's
  bf16 dense peak (``core/flops.py``; "unknown" where the table has no peak) and peak GPU memory;
- ``profile``: one ``torch.profiler`` run of a step of 2 x 8 trajectories (the same shapes,
  fewer of them, so that it fits the device time): the top kernels (``profile-top-kernels.txt``)
  and where the device waited on the CPU (``profile-gaps.json``), in the output directory.

The output directory is ``--out``, else ``$OUT``, else a new temporary directory; the JSON is
also written there (``gpu-check.json``), after each part. Each part is timed and guarded: a
failure is reported in the JSON and the next part still runs.

The check runs on one GPU. The fsdp step on several is ``bench scale``'s
(``bench/distributed_step.py``): the device lent to this check has one.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from pareto_bench.core.flops import UNKNOWN, device_entry, mfu, non_embedding_parameters

BATCH = 32
NEW_TOKENS = 256
RL_TOKENS = 1024
RL_GROUPS, RL_GROUP_SIZE = 16, 8
PROFILE_GROUPS = 2
BARE_FORWARDS = 5  # timed bare forwards, after two warm-up ones
TOP_KERNELS = 40
LONGEST_GAPS = 20
UNFUSED_FLEX = "flex_attention called without torch.compile"
GB = 2**30


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


def _mfu(flops: float, seconds: float, peak: float | None) -> float | str:
    value = mfu(flops, seconds, peak)
    return UNKNOWN if value is None else value


def check_decode(lm, batch_size: int = BATCH, new_tokens: int = NEW_TOKENS) -> dict[str, Any]:
    from pareto_bench.dllm.sampler import aggregate_tpf, generate

    prompts = _prompts(lm, batch_size)
    never = -1  # no EOS: every sequence decodes NEW_TOKENS tokens
    context = round(sum(map(len, prompts)) / len(prompts)) + new_tokens // 2
    bare = {
        block: bare_forward_seconds(lm.model, batch=batch_size, context=context, tokens=block)
        for block in (4, 32)
    }
    rows = []
    for block in (4, 32):
        for tpf in (1, 4, 8):
            if tpf > block:
                continue

            def run(block=block, tpf=tpf, n=new_tokens):
                return generate(
                    lm,
                    prompts,
                    eos_ids=(never,),
                    block_size=block,
                    threshold=0.0,
                    max_new_tokens=n,
                    strategy="static",
                    steps_per_block=block // tpf,
                )

            run(n=block)  # warm-up
            outs, seconds = _timed(run)
            tokens = sum(len(g.tokens) for g in outs)
            per_forward = seconds / max(g.num_forwards for g in outs)  # rows run in lockstep
            rows.append(
                {
                    "block_size": block,
                    "tokens_per_forward": aggregate_tpf(outs),
                    "tokens_per_s": tokens / seconds,
                    "seconds": seconds,
                    "seconds_per_forward": per_forward,
                    "vs_bare_forward": per_forward / bare[block],
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
        "bare_forward": {"context": context, "seconds": {str(b): s for b, s in bare.items()}},
    }


def bare_forward_seconds(
    model, *, batch: int, context: int, tokens: int, repeats: int = BARE_FORWARDS
) -> float:
    """One bare backbone forward of ``batch`` x ``tokens`` new tokens after ``context`` cached
    ones, with transformers' own causal mask and cache and nothing around it: what a sampler
    forward of that shape costs at least."""
    from transformers import DynamicCache

    ids = torch.randint(0, model.config.vocab_size, (batch, context + tokens), device=model.device)
    with torch.no_grad():
        cache = DynamicCache()
        model.base_model(input_ids=ids[:, :context], cache=cache, use_cache=True)

        def forward() -> None:
            model.base_model(input_ids=ids[:, context:], cache=cache, use_cache=True)
            cache.crop(-tokens)

        for _ in range(2):  # warm-up
            forward()
        _, seconds = _timed(lambda: [forward() for _ in range(repeats)])
    return seconds / repeats


def _rl_config(checkpoint: Path, device: str, tokens: int, groups: int, group_size: int):
    from pareto_bench.bench.sdar_shaped import SDAR_BLOCK, rl_step_config

    return rl_step_config(
        checkpoint,
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


def _one_step(config, *, memory: bool = False, profiler=None):
    """One RL step of a fresh run of ``config`` (no checkpoint written): its record, its clock and
    the policy's non-embedding parameters. The run is freed on return."""
    from pareto_bench.rl.run import TrainingRun
    from pareto_bench.rl.step import Stopwatch, train_step

    run = TrainingRun.start(config, None)
    clock = Stopwatch(run.device, run.compute_dtype, memory=memory)
    with profiler or contextlib.nullcontext():
        record = train_step(run, 0, clock)
    parameters = non_embedding_parameters(run.policy.model)
    del run  # the next step loads its own
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return record, clock, parameters


def check_rl_step(
    checkpoint: Path,
    device: str = "cuda",
    tokens: int = RL_TOKENS,
    groups: int = RL_GROUPS,
    group_size: int = RL_GROUP_SIZE,
) -> dict[str, Any]:
    from pareto_bench.rl.step import PHASES

    started = time.perf_counter()
    _one_step(_rl_config(checkpoint, device, tokens, 1, group_size))  # warm-up
    warm_up = time.perf_counter() - started
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = _rl_config(checkpoint, device, tokens, groups, group_size)
        record, clock, parameters = _one_step(config, memory=True)
    peak = clock.peak
    phases = {}
    for phase in PHASES:
        seconds, flops = clock.seconds[phase], clock.flops[phase]
        memory = clock.peak_memory.get(phase)
        phases[phase] = {
            "seconds": seconds,
            "flops": flops,
            "mfu": _mfu(flops, seconds, peak),
            "peak_gpu_memory_gb": None if memory is None else memory / GB,
        }
    # The target of issue 29: the likelihood's forwards and their backward together.
    trained = [phases["likelihood"], phases["backward"]]
    trained_seconds = sum(p["seconds"] for p in trained)
    trained_flops = sum(p["flops"] for p in trained)
    return {
        "trajectories": groups * group_size,
        "tokens": tokens,
        "tpf": record.tpf,
        "non_embedding_parameters": parameters,
        "peak_bf16_flops": UNKNOWN if peak is None else peak,
        "warm_up_seconds": warm_up,
        "step_seconds": record.step_time,
        "step_flops": record.flops,
        "step_mfu": UNKNOWN if record.mfu is None else record.mfu,
        "phases": phases,
        "likelihood_and_backward": {
            "seconds": trained_seconds,
            "flops": trained_flops,
            "mfu": _mfu(trained_flops, trained_seconds, peak),
        },
        "likelihood_forwards_per_trajectory": record.likelihood_forwards,
        "peak_gpu_memory_gb": max(clock.peak_memory.values()) / GB if clock.peak_memory else None,
        "loss": record.loss,
        # FlexAttention must stay compiled: unfused, it holds the full score matrix.
        "flex_ran_unfused": any(UNFUSED_FLEX in str(w.message) for w in caught),
    }


def check_profile(
    checkpoint: Path,
    out: Path,
    device: str = "cuda",
    tokens: int = RL_TOKENS,
    groups: int = PROFILE_GROUPS,
    group_size: int = RL_GROUP_SIZE,
) -> dict[str, Any]:
    """One profiled RL step: the top kernels by device time (on the CPU: the top ops by CPU
    time) to ``profile-top-kernels.txt``, and the device's idle gaps to ``profile-gaps.json``."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    from pareto_bench.rl.step import PHASES

    on_gpu = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    profiler = profile(activities=activities)
    config = _rl_config(checkpoint, device, tokens, groups, group_size)
    record, _, _ = _one_step(config, profiler=profiler)
    out.mkdir(parents=True, exist_ok=True)
    sort = "self_device_time_total" if on_gpu else "self_cpu_time_total"
    table = profiler.key_averages().table(sort_by=sort, row_limit=TOP_KERNELS)
    kernels_file, gaps_file = out / "profile-top-kernels.txt", out / "profile-gaps.json"
    kernels_file.write_text(table + "\n")
    events = profiler.events()
    # The device's work: its kernels and copies; on the CPU the ops that call no other op.
    kind = DeviceType.CUDA if on_gpu else DeviceType.CPU
    busy = [
        (e.time_range.start, e.time_range.end)
        for e in events
        if e.device_type == kind and not e.is_user_annotation and (on_gpu or not e.cpu_children)
    ]
    phases = [
        (e.name, e.time_range.start, e.time_range.end)
        for e in events
        if e.is_user_annotation and e.device_type == DeviceType.CPU and e.name in PHASES
    ]
    gaps = idle_gaps(busy, phases)
    gaps_file.write_text(json.dumps(gaps, indent=2) + "\n")
    return {
        "trajectories": groups * group_size,
        "tokens": tokens,
        "step_seconds": record.step_time,  # with the profiler's own overhead
        "files": [kernels_file.name, gaps_file.name],
        **{k: gaps[k] for k in ("busy_seconds", "idle_seconds", "idle_by_phase")},
    }


def idle_gaps(
    busy: Sequence[tuple[float, float]],
    phases: Sequence[tuple[str, float, float]],
    longest: int = LONGEST_GAPS,
) -> dict[str, Any]:
    """Where the device waited on the CPU. ``busy``: the device's work as ``(start, end)`` in
    microseconds, overlaps allowed; ``phases``: ``(name, start, end)`` ranges of the step. The
    gaps between the busy intervals, in seconds: in all, per phase (by overlap; outside every
    phase is ``other``), and the ``longest`` of them with the phase each begins in."""
    gaps: list[tuple[float, float]] = []
    reach = None
    for start, end in sorted(busy):
        if reach is not None and start > reach:
            gaps.append((reach, start))
        reach = end if reach is None else max(reach, end)
    by_phase: dict[str, float] = {}
    for gap_start, gap_end in gaps:
        inside = 0.0
        for name, start, end in phases:
            overlap = max(0.0, min(end, gap_end) - max(start, gap_start))
            if overlap:
                by_phase[name] = by_phase.get(name, 0.0) + overlap / 1e6
                inside += overlap
        if gap_end - gap_start > inside:
            by_phase["other"] = by_phase.get("other", 0.0) + (gap_end - gap_start - inside) / 1e6

    def phase_at(t: float) -> str:
        return next((name for name, start, end in phases if start <= t < end), "other")

    idle = sum(end - start for start, end in gaps)
    span = (reach - min(start for start, _ in busy)) if busy else 0.0
    return {
        "busy_seconds": (span - idle) / 1e6,
        "idle_seconds": idle / 1e6,
        "gaps": len(gaps),
        "idle_by_phase": by_phase,
        "longest": [
            {"seconds": (end - start) / 1e6, "phase": phase_at(start)}
            for start, end in sorted(gaps, key=lambda g: g[0] - g[1])[:longest]
        ],
    }


def _out_dir(option: str | None) -> Path:
    chosen = option or os.environ.get("OUT")
    path = Path(chosen) if chosen else Path(tempfile.mkdtemp(prefix="gpu-check-"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_parts(
    result: dict[str, Any], parts: Sequence[tuple[str, Callable[[], dict[str, Any]]]], out: Path
) -> dict[str, Any]:
    """Each part's JSON into ``result`` under its name, or its error: a failure is reported and
    the next part still runs. ``result`` goes to ``out/gpu-check.json`` after every part, so that
    a run stopped by its timeout leaves what it measured."""
    for name, part in parts:
        started = time.perf_counter()
        try:
            result[name] = part()
        except Exception:  # report and go on: one JSON for the whole run
            result[name] = {"error": traceback.format_exc(limit=8)}
        result[name]["wall_seconds"] = time.perf_counter() - started
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        print(json.dumps({name: result[name]}), file=sys.stderr, flush=True)
        (out / "gpu-check.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: Sequence[str] | None = None) -> None:
    from pareto_bench.bench.sdar_shaped import SDAR_1_7B, write_sdar_shaped_checkpoint
    from pareto_bench.dllm.models import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="where the profile and the JSON go (default: $OUT)")
    out = _out_dir(parser.parse_args(argv).out)
    result: dict[str, Any] = {"device": None, "out": str(out)}
    if not torch.cuda.is_available():
        result["error"] = "no CUDA device"
        print(json.dumps(result))
        sys.exit(1)
    result["device"] = torch.cuda.get_device_name()
    result["peak_table_entry"] = device_entry(result["device"]) or UNKNOWN
    result["torch"] = torch.__version__
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        with torch.device("cuda"):  # random init on the GPU: seconds, not minutes
            checkpoint = write_sdar_shaped_checkpoint(Path(tmp) / "sdar-1.7b", shape=SDAR_1_7B)
        result["checkpoint_seconds"] = time.perf_counter() - started
        parts = (
            (
                "decode",
                lambda: check_decode(load_model(checkpoint, device="cuda", dtype="bfloat16")),
            ),
            ("rl_step", lambda: check_rl_step(checkpoint)),
            ("profile", lambda: check_profile(checkpoint, out)),
        )
        run_parts(result, parts, out)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
