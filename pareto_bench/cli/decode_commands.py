"""Commands around the model and the sampler: ``decode``, ``pretrain-tiny``, ``bench decode``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pareto_bench.cli.options import DeviceOption, DtypeOption
from pareto_bench.core.defaults import MODEL, OPERATING_THRESHOLD
from pareto_bench.core.progress import progress_bar


def register(app: typer.Typer, bench: typer.Typer) -> None:
    app.command("decode")(decode)
    app.command("pretrain-tiny")(pretrain_tiny)
    bench.command("decode")(bench_decode)


def decode(
    prompt: Annotated[
        str, typer.Option(help="Prompt text (the model's chat template is applied if it has one).")
    ],
    model: Annotated[str, typer.Option(help="'tiny' or a checkpoint directory.")] = MODEL,
    threshold: Annotated[
        float, typer.Option(help="Confidence threshold tau.")
    ] = OPERATING_THRESHOLD,
    block_size: Annotated[int | None, typer.Option(help="Override the model's block size.")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Token budget.")] = 64,
    strategy: Annotated[str, typer.Option(help="dynamic | static")] = "dynamic",
    steps_per_block: Annotated[int | None, typer.Option(help="static: forwards per block.")] = None,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Seed for sampling.")] = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Decode one prompt and show the text, tokens, forwards and TPF."""
    from pareto_bench.cli.options import resolve_placement
    from pareto_bench.dllm.models import load_model
    from pareto_bench.dllm.sampler import generate

    placed_on, placed_in = resolve_placement(device, dtype)
    lm = load_model(model, block_size=block_size, device=placed_on, dtype=placed_in)
    ids = lm.encode_prompt(prompt)
    out = generate(
        lm,
        [ids],
        threshold=threshold,
        max_new_tokens=max_new_tokens,
        strategy=strategy,
        steps_per_block=steps_per_block,
        temperature=temperature,
        seed=seed,
    )[0]
    result = {
        "text": lm.decode(out.tokens),
        "tokens": out.tokens,
        "step_map": out.step_map,
        "num_forwards": out.num_forwards,
        "tpf": out.tpf,
        "hit_budget": out.hit_budget,
    }
    if as_json:
        print(json.dumps(result))
    else:
        print(result["text"])
        print(f"tokens {len(out.tokens)}  forwards {out.num_forwards}  TPF {out.tpf:.2f}")


def pretrain_tiny(
    out: Annotated[Path, typer.Option(help="Where to write the checkpoint.")] = Path(
        "runs/tiny-pretrain"
    ),
    steps: Annotated[
        int | None, typer.Option(help="Optimizer steps (default: the config's).")
    ] = None,
    set_: Annotated[
        list[str], typer.Option("--set", help="Override a PretrainConfig field, key=value.")
    ] = [],  # noqa: B006
    install: Annotated[
        bool, typer.Option(help="Also replace the model shipped in the package.")
    ] = False,
) -> None:
    """Train the tiny block-diffusion model from scratch on the synthetic task."""
    import shutil

    from pareto_bench.core.schema import load
    from pareto_bench.dllm.pretrain import PretrainConfig
    from pareto_bench.dllm.pretrain import pretrain_tiny as run
    from pareto_bench.dllm.tiny import SHIPPED_TINY

    config = load(PretrainConfig, overrides=[*set_, *([f"steps={steps}"] if steps else [])])
    with progress_bar("pretrain tiny", config.steps) as bar:
        run(config, out, on_step=lambda step, loss: bar.advance(status=f"loss {loss:.3f}"))
    print(f"saved {out}")
    if install:
        shutil.rmtree(SHIPPED_TINY, ignore_errors=True)
        shutil.copytree(out, SHIPPED_TINY)
        print(f"installed as the shipped tiny model: {SHIPPED_TINY}")


def bench_decode(
    model: Annotated[str, typer.Option(help="'tiny' or a checkpoint directory.")] = MODEL,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens per sequence.")] = 128,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (the default output).")
    ] = True,
) -> None:
    """Sampler throughput: thresholds, cached vs uncached, AR, batch 1/8/32. Prints JSON."""
    from pareto_bench.bench.decode import bench_decode as run
    from pareto_bench.cli.options import resolve_placement
    from pareto_bench.dllm.models import load_model

    placed_on, placed_in = resolve_placement(device, dtype)
    lm = load_model(model, device=placed_on, dtype=placed_in)
    print(json.dumps(run(lm, max_new_tokens=max_new_tokens), indent=None if as_json else 2))
