"""Device and dtype options: resolved by ``placement``, one line when wrong, and carried from
the CLI and from a sweep spec to every model a command or a trial loads."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from typer.testing import CliRunner

from pareto_bench.cli import USER_ERRORS, app, main
from pareto_bench.core.placement import (
    DEVICE_HELP,
    DTYPE_HELP,
    PlacementError,
    resolve_device,
    resolve_dtype,
)
from pareto_bench.core.records import BASELINE, TRIAL
from pareto_bench.core.schema import ConfigError
from pareto_bench.rl.config import TrainConfig
from pareto_bench.sweep import load_spec, plan_trials
from pareto_bench.sweep.runner import Sweep
from pareto_bench.sweep.study import spec_identity
from pareto_bench.sweep.trial import TrialSpec, train_and_evaluate

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def no_gpu(monkeypatch):
    """This process sees no GPU, whatever the machine has (the tests below are about the CPU)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


# --------------------------------------------------------------------------- placement


def test_auto_is_the_cpu_in_float32_without_a_gpu(no_gpu):
    device = resolve_device("auto")
    assert device == torch.device("cpu")
    assert resolve_dtype("auto", device) == torch.float32


def test_named_devices_and_dtypes_resolve_on_the_cpu(no_gpu):
    cpu = resolve_device("cpu")
    assert cpu == torch.device("cpu")
    assert resolve_dtype("float32", cpu) == torch.float32
    assert resolve_dtype("bfloat16", cpu) == torch.bfloat16


@pytest.mark.parametrize("name", ["gpu", "CUDA", "cuda:", "cuda:x", "mps", ""])
def test_a_misspelled_device_names_the_valid_ones(name):
    with pytest.raises(PlacementError) as caught:
        resolve_device(name)
    assert DEVICE_HELP in str(caught.value) and repr(name) in str(caught.value)


@pytest.mark.parametrize("name", ["float16", "fp32", "bf16", "half"])
def test_an_unsupported_dtype_names_the_valid_ones(name):
    with pytest.raises(PlacementError) as caught:
        resolve_dtype(name, torch.device("cpu"))
    assert DTYPE_HELP in str(caught.value) and repr(name) in str(caught.value)


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_a_gpu_is_a_placement_error_with_the_fix(no_gpu, name):
    with pytest.raises(PlacementError, match="no CUDA GPU.*use device=cpu or auto"):
        resolve_device(name)


@needs_gpu
def test_auto_on_a_gpu_is_the_gpu_in_bfloat16():
    device = resolve_device("auto")
    assert device.type == "cuda"
    assert resolve_dtype("auto", device) == torch.bfloat16
    with pytest.raises(PlacementError, match="GPU\\(s\\) are visible"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


# --------------------------------------------------------------------------- the CLI


BAD_OPTIONS = [
    (["eval", "--task", "synthetic", "--device", "gpu"], "--device 'gpu'", DEVICE_HELP),
    (["decode", "--prompt", "1,2:", "--device", "cuda"], "--device 'cuda'", "--device cpu"),
    (["decode", "--prompt", "1,2:", "--dtype", "float16"], "--dtype 'float16'", DTYPE_HELP),
    (["bench", "decode", "--device", "cuda:x"], "--device 'cuda:x'", DEVICE_HELP),
]


@pytest.mark.parametrize(("args", "option", "fix"), BAD_OPTIONS)
def test_bad_placement_options_fail_in_one_line(no_gpu, args, option, fix):
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert isinstance(result.exception, USER_ERRORS), result.exception
    message = str(result.exception)
    assert "\n" not in message
    assert message.startswith(option) and fix in message


@pytest.mark.parametrize(("args", "option", "fix"), BAD_OPTIONS[:3])
def test_the_command_line_prints_one_error_line_and_exits_2(
    no_gpu, monkeypatch, capsys, args, option, fix
):
    monkeypatch.setattr(sys, "argv", ["pareto-bench", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {option}") and fix in err


def test_decode_runs_in_bfloat16_on_the_cpu():
    args = ["decode", "--model", "tiny", "--prompt", "1,2,3,4:", "--device", "cpu"]
    result = runner.invoke(app, [*args, "--dtype", "bfloat16", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["tokens"] and out["num_forwards"] >= 1
    assert out["tpf"] == len(out["tokens"]) / out["num_forwards"]


def test_bench_decode_reports_the_resolved_device_and_dtype(monkeypatch):
    import pareto_bench.bench.decode as bench

    seen = {}

    def fake_bench(lm, *, max_new_tokens):  # the real one times dozens of decodes
        seen["dtype"] = next(lm.model.parameters()).dtype
        return {"device": str(lm.device), "dtype": str(seen["dtype"]).removeprefix("torch.")}

    monkeypatch.setattr(bench, "bench_decode", fake_bench)
    result = runner.invoke(app, ["bench", "decode", "--device", "cpu", "--dtype", "bfloat16"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"device": "cpu", "dtype": "bfloat16"}
    assert seen["dtype"] == torch.bfloat16


def test_bench_decode_json_names_device_and_dtype():
    from pareto_bench.bench.decode import bench_decode
    from pareto_bench.dllm.models import load_model

    lm = load_model("tiny", device="cpu", dtype="bfloat16")
    out = bench_decode(lm, max_new_tokens=8, batch_sizes=(1,), thresholds=(0.9,), main_batch=1)
    assert out["device"] == "cpu" and out["dtype"] == "bfloat16"


# --------------------------------------------------------------------------- sweeps


def write_spec(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load((ROOT / "sweeps" / "tiny.yaml").read_text())
    data.update(changes)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_spec_placement_reaches_every_trainer_config(tmp_path):
    path = write_spec(tmp_path, device="cpu", dtype="float32")
    spec = load_spec(path)
    assert (spec.device, spec.dtype) == ("cpu", "float32")
    planned = plan_trials(spec, path, budget=2)
    trained = [p for p in planned if p.config is not None]
    assert {p.kind for p in trained} == {BASELINE, TRIAL}  # the grpo baseline and the trials
    for p in trained:
        config = TrainConfig.model_validate(p.config)
        assert (config.device, config.dtype) == ("cpu", "float32"), p.name


def test_spec_placement_defaults_to_auto(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    assert (spec.device, spec.dtype) == ("auto", "auto")


def test_spec_placement_reaches_every_trial_spec(tmp_path):
    path = write_spec(tmp_path, device="cpu", dtype="bfloat16")
    sweep = SimpleNamespace(
        spec=load_spec(path),
        options=SimpleNamespace(spec_path=path),
        out=SimpleNamespace(trial_dir=lambda number: tmp_path / f"trial-{number}"),
    )
    base = Sweep.trial_spec(sweep, 0, BASELINE, "base", {})
    trial = Sweep.trial_spec(sweep, 2, TRIAL, "trial-2", {})
    for spec in (base, trial):  # the evaluation's model, untrained or trained
        assert (spec.device, spec.dtype) == ("cpu", "bfloat16")
        assert TrialSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert base.config is None
    assert (trial.config["device"], trial.config["dtype"]) == ("cpu", "bfloat16")


def test_a_trial_evaluates_on_its_spec_device_and_dtype(tmp_path, monkeypatch):
    import pareto_bench.dllm.models as models

    loaded = []
    real = models.load_model

    def spy(spec, **kw):
        lm = real(spec, **kw)
        loaded.append((kw, next(lm.model.parameters()).dtype))
        return lm

    monkeypatch.setattr(models, "load_model", spy)
    spec = TrialSpec(
        number=0,
        kind=BASELINE,
        name="base",
        trial_dir=str(tmp_path),
        model="tiny",
        tasks=["synthetic"],
        thresholds=[0.9],
        limit=2,
        device="cpu",
        dtype="bfloat16",
        threads=1,
    )
    records = train_and_evaluate(spec, lambda record: None)
    assert [(r.task, r.num_samples) for r in records] == [("synthetic", 2)]
    ((kwargs, dtype),) = loaded
    assert kwargs == {"device": "cpu", "dtype": "bfloat16"} and dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"device": "gpu"}, ["field 'device'", "'gpu'", DEVICE_HELP]),
        ({"dtype": "float16"}, ["field 'dtype'", "'float16'", "bfloat16"]),
        ({"train": {"device": "cpu"}}, ["'device'", "top-level"]),
        ({"search_space": {"dtype": ["float32", "bfloat16"]}}, ["'dtype'", "top-level"]),
    ],
)
def test_bad_spec_placement_names_the_field(tmp_path, changes, expected):
    path = write_spec(tmp_path, **changes)
    with pytest.raises(ConfigError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    for fragment in expected:
        assert fragment in message


def test_the_study_identity_keeps_what_can_change_results(tmp_path):
    """The device never changes results, nor float32 batching; bf16 batching can, so a bf16
    study keeps its dtype and eval batch size in its identity."""
    default = spec_identity(load_spec(write_spec(tmp_path)))
    on_cpu = spec_identity(load_spec(write_spec(tmp_path, device="cpu", dtype="float32")))
    assert default == on_cpu and "device" not in on_cpu and "dtype" not in on_cpu
    assert "batch_size" not in on_cpu["eval"]
    bf16 = spec_identity(load_spec(write_spec(tmp_path, device="cpu", dtype="bfloat16")))
    assert bf16 != default and bf16["dtype"] == "bfloat16" and "batch_size" in bf16["eval"]
    # Studies made before train_base existed stay resumable; one that uses it keeps it.
    assert "train_base" not in spec_identity(load_spec(write_spec(tmp_path, train_base=None)))
    assert default["train_base"] == "lightningrl-tiny"
