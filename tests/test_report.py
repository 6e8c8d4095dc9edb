"""Reports from recorded data: the sweep reader, the findings, the PDF, MLflow, and the
``frontier`` / ``report`` / ``compare`` / ``bench`` commands run as a user runs them."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures_sweep import BEST_TRIAL, FAILED_TRIAL, FAILURE, PROBLEMS, TASKS, write_fixture_sweep
from pypdf import PdfReader

from pareto_bench.analysis import frontier as F
from pareto_bench.analysis.report.build import build_report, log_pdf_to_run
from pareto_bench.analysis.report.importance import MIN_TRIALS, compute_importances
from pareto_bench.analysis.report.summary import summarise, task_y_max
from pareto_bench.analysis.report.sweep_data import load_sweep_dir
from pareto_bench.analysis.report.template import load_template
from pareto_bench.core.defaults import BASELINES, HV_REFERENCE
from pareto_bench.core.records import BASELINE, TRIAL

CLI = [sys.executable, "-c", "from pareto_bench.cli import main; main()"]


def run_cli(
    *args: str | Path, cwd: Path, tmpdir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(tmpdir)} if tmpdir else None
    return subprocess.run(
        [*CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
    )


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    return write_fixture_sweep(tmp_path_factory.mktemp("recorded") / "fixture-sweep")


@pytest.fixture(scope="module")
def report_pdf(sweep_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "fixture.pdf"
    result = build_report(load_sweep_dir(sweep_dir), out, load_template(), n_boot=300)
    assert result.path == out and result.warnings == [] and result.logged_to_run is None
    return out


def page_texts(pdf: Path) -> list[str]:
    return [page.extract_text() for page in PdfReader(pdf).pages]


# ------------------------------------------------------------------------------ reading


def test_loader_reads_every_file_and_keeps_the_last_row(sweep_dir):
    sweep = load_sweep_dir(sweep_dir)
    assert sweep.name == "fixture-sweep" and sweep.tasks == list(TASKS)
    assert [t.number for t in sweep.trials] == [0, 1, 2, 3, 4, 5, 6]
    assert sweep.state_counts() == {"COMPLETE": 6, "FAIL": 1}
    failed = sweep.trials[FAILED_TRIAL]
    assert failed.record.failure_reason == FAILURE and failed.evals == []
    best = sweep.trials[BEST_TRIAL]
    assert len(best.evals) == len(TASKS) * 3 and len(best.train) == 6
    assert "tpf_weight" in best.config_text
    assert [r.threshold for r in best.task_records("gsm8k")] == [0.5, 0.7, 0.9]
    assert sweep.baseline("base").record.kind == "baseline"
    assert sweep.warnings == []


def test_loader_turns_damage_into_warnings(sweep_dir, tmp_path):
    damaged = shutil.copytree(sweep_dir, tmp_path / "damaged")
    eval_file = damaged / "trials" / "2" / "eval.jsonl"
    lines = eval_file.read_text().splitlines()
    eval_file.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    (damaged / "trials" / "9").mkdir()
    (damaged / "sweep.json").unlink()

    sweep = load_sweep_dir(damaged)
    assert sweep.name == "damaged"
    assert sweep.trials[2].evals == [] and len(sweep.trials[3].evals) == 6
    assert sweep.trials[-1].record.state == "UNKNOWN"
    joined = " ".join(sweep.warnings)
    assert "trials/2/eval.jsonl" in joined and "trials/9/" in joined and "sweep.json" in joined


def test_loader_rejects_a_directory_without_a_sweep(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a sweep directory"):
        load_sweep_dir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such sweep directory"):
        load_sweep_dir(tmp_path / "missing")


# ----------------------------------------------------------------------------- findings


def test_summary_finds_the_best_trial_and_measures_it_against_base(sweep_dir):
    summary = summarise(load_sweep_dir(sweep_dir), n_boot=300)
    w = math.exp(-3 * (1 - 67.5 / 70))
    best_aup = 2 * 70 + (4 - 2) * (70 + 67.5 * w) / 2  # (8, 50) is > 5 points below 70
    for task in summary.tasks:
        assert task.best.number == BEST_TRIAL and task.y_max == 70.0
        assert task.best_aup == pytest.approx(best_aup)
        assert task.comparison.aup_b == pytest.approx(1 * 50)  # only (1, 50) survives the cut
        assert task.comparison.aup_diff.low > 0
        assert task.comparison.hypervolume_diff.excludes_zero
    assert summary.verdict.count(f"trial {BEST_TRIAL} beats the base model") == len(TASKS)


def test_a_replicated_best_trial_gets_an_interval_over_seeds_then_problems(tmp_path):
    sweep = load_sweep_dir(write_fixture_sweep(tmp_path / "sweep", replicated=(1, BEST_TRIAL)))
    best = sweep.trials[[t.number for t in sweep.trials].index(BEST_TRIAL)]
    assert sorted(best.replicates) == [0, 1]
    summary = summarise(sweep, n_boot=200)
    for task in summary.tasks:
        assert task.best.number == BEST_TRIAL
        r = task.replicated
        assert (r.seeds_a, r.seeds_b, r.problems, r.aggregate) == (2, 1, PROBLEMS, "median")
        # The median of two seeds' AUPs sits between them; base ran once.
        per_seed = [F.records_aup(rs, task.y_max) for rs in _curves(best.seed_records(), task.task)]
        assert min(per_seed) < r.aup_a < max(per_seed)
        assert r.aup_a == pytest.approx(task.best_aup)
    assert "resampling 2 and 1 seeds, then 40 problems" in summary.verdict


def _curves(seed_records, task):
    return [
        sorted((r for r in rs if r.task == task), key=lambda r: r.threshold) for rs in seed_records
    ]


def test_y_max_is_the_best_accuracy_or_the_fixed_ceiling_when_all_are_zero(sweep_dir):
    sweep = load_sweep_dir(sweep_dir)
    assert task_y_max(sweep, TASKS[0]) == 70.0
    for trial in sweep.trials:
        for records in (trial.evals, *trial.replicates.values()):
            for record in records:
                record.accuracy = 0.0
    assert task_y_max(sweep, TASKS[0]) == F.FIXED_Y_MAX


def test_summary_without_a_base_baseline_says_so(sweep_dir):
    sweep = load_sweep_dir(sweep_dir)
    sweep.trials = [t for t in sweep.trials if t.record.name != "base"]
    summary = summarise(sweep, n_boot=50)
    assert "No `base` baseline" in summary.verdict
    assert all(t.comparison is None and t.best.number == BEST_TRIAL for t in summary.tasks)


# ---------------------------------------------------------------------------------- PDF


def test_pdf_pages_and_text(report_pdf):
    texts = page_texts(report_pdf)
    # summary, one frontier per task, attainment, trial table, training, importances, provenance
    assert len(texts) == 1 + len(TASKS) + 5
    summary, *rest = texts
    assert "Sweep report: fixture-sweep" in summary
    assert f"trial {BEST_TRIAL} beats the base model" in summary
    assert "lr=0.0003" in summary and "95% CI" in summary
    frontiers = rest[: len(TASKS)]
    for task, text in zip(TASKS, frontiers, strict=True):
        assert f"Frontier: {task}" in text
    assert "arXiv 2603.13319" in frontiers[TASKS.index("gsm8k")]  # published overlay cited
    assert "arXiv" not in frontiers[TASKS.index("synthetic")]  # no paper numbers for it
    attainment, table, training, importances, provenance = rest[len(TASKS) :]
    assert "Attainment across seeds" in attainment and "median" in attainment
    assert "TrainingDiverged" in table and "trial 6" in table and "grpo" in table
    assert "Training curves" in training
    assert "fANOVA" in importances and "Optuna study storage" in importances
    assert "v0-fixture" in provenance and "transformers" in provenance
    assert "search_space" in provenance  # spec.yaml, verbatim
    assert "study_name" in provenance and '"study.journal"' in provenance  # sweep.json


def test_pdf_page_converts_to_png(report_pdf, tmp_path):
    pdfium = pytest.importorskip("pypdfium2")
    image = pdfium.PdfDocument(str(report_pdf))[1].render(scale=1.0).to_pil()
    image.save(tmp_path / "page2.png")
    pixels = np.asarray(image.convert("L"))
    assert image.width > image.height  # landscape pages
    assert (pixels < 128).mean() > 0.005  # the frontier plot is there, not a blank page
    if shutil.which("pdftoppm"):  # poppler, where installed
        subprocess.run(
            ["pdftoppm", "-png", "-f", "1", "-l", "1", report_pdf, tmp_path / "pp"], check=True
        )
        assert list(tmp_path.glob("pp*.png"))


def test_importances_need_enough_trials(tmp_path):
    sweep = load_sweep_dir(write_fixture_sweep(tmp_path / "small", trials=(2, FAILED_TRIAL)))
    importances = compute_importances(sweep)
    assert importances.by_objective == {}
    assert f"at least {MIN_TRIALS} completed trials" in importances.note
    out = build_report(sweep, tmp_path / "small.pdf", load_template(), n_boot=50).path
    assert any("No importances" in text for text in page_texts(out))


def test_importances_rebuild_the_study_when_storage_is_gone(sweep_dir, tmp_path):
    copy = shutil.copytree(sweep_dir, tmp_path / "copy")
    (copy / "study.journal").unlink()
    importances = compute_importances(load_sweep_dir(copy))
    assert importances.source.startswith("rebuilt from trials.jsonl")
    assert set(importances.by_objective) == {f"{t}/{m}" for t in TASKS for m in ("accuracy", "tpf")}
    for ranking in importances.by_objective.values():
        assert set(ranking) == {"lr", "tpf_weight", "nll_weight"}
        assert sum(ranking.values()) == pytest.approx(1.0)


def test_unreachable_tracking_store_keeps_the_pdf(tmp_path):
    missing_db = tmp_path / "nowhere" / "mlflow.db"
    sweep_dir = write_fixture_sweep(
        tmp_path / "s",
        trials=(2, 3),
        tracking_uri=f"sqlite:///{missing_db}",
        parent_run_id="0" * 32,
    )
    result = build_report(load_sweep_dir(sweep_dir), tmp_path / "r.pdf", load_template(), n_boot=50)
    assert result.path.is_file() and result.logged_to_run is None
    assert any("not found" in w and str(result.path) in w for w in result.warnings)
    assert not missing_db.exists()  # no empty database created as a side effect

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    warning = log_pdf_to_run(result.path, f"http://127.0.0.1:{closed_port}", "0" * 32)
    assert warning is not None and "could not log the PDF" in warning and result.path.is_file()


# ------------------------------------------------------------------------------- MLflow


def _log_sweep_to_mlflow(sweep_dir: Path, uri: str, artifacts: Path) -> str:
    """Log the fixture sweep the way the sweep harness does: a parent run with the spec,
    sweep.json and trials.jsonl, and one child run per trial with its files and tags."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("fixture", artifact_location=artifacts.as_uri())
    parent = client.create_run(experiment, run_name="fixture-sweep").info.run_id
    meta = json.loads((sweep_dir / "sweep.json").read_text())
    meta.update(tracking_uri=uri, parent_run_id=parent)
    (sweep_dir / "sweep.json").write_text(json.dumps(meta))
    for name in ("spec.yaml", "sweep.json", "trials.jsonl"):
        client.log_artifact(parent, str(sweep_dir / name))
    for trial in load_sweep_dir(sweep_dir).trials:
        tags = {
            "mlflow.parentRunId": parent,
            "kind": trial.record.kind,
            "trial_number": str(trial.number),
        }
        child = client.create_run(experiment, run_name=trial.record.name, tags=tags).info.run_id
        if trial.record.name == "grpo":  # metrics only: the reader must rebuild its points
            # No {task}/threshold metric either: step = index of the threshold in sweep.json.
            thresholds = sorted({r.threshold for r in trial.evals})
            points = []
            for r in trial.evals:
                step = thresholds.index(r.threshold)
                points += [
                    Metric(f"{r.task}/accuracy", r.accuracy, 0, step),
                    Metric(f"{r.task}/tpf", r.tpf, 0, step),
                ]
            client.log_batch(child, metrics=points)
        else:
            folder = sweep_dir / "trials" / str(trial.number)
            for path in folder.iterdir():
                client.log_artifact(child, str(path))
        client.set_terminated(child)
    return parent


@pytest.fixture(scope="module")
def mlflow_sweep(sweep_dir, tmp_path_factory) -> tuple[Path, str, str]:
    """The fixture sweep logged to a fresh local MLflow store: (working dir, URI, parent id)."""
    root = tmp_path_factory.mktemp("mlflow")
    local = shutil.copytree(sweep_dir, root / "sweep")
    (root / "mlruns").mkdir()
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    return root, uri, _log_sweep_to_mlflow(local, uri, root / "artifacts")


def test_report_from_an_mlflow_run_is_logged_back_to_it(mlflow_sweep):
    from mlflow.tracking import MlflowClient

    root, uri, parent = mlflow_sweep
    done = run_cli("report", "--mlflow-run", parent, "--tracking-uri", uri, "--out", "out/r.pdf",
                   "--n-boot", "100", cwd=root)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "report: out/r.pdf" in done.stdout and f"logged to MLflow run {parent}" in done.stdout
    summary = page_texts(root / "out" / "r.pdf")[0]
    assert f"MLflow run {parent}" in summary and f"trial {BEST_TRIAL} beats" in summary
    logged = [a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(parent, "report")]
    assert logged == ["report/r.pdf"]


def test_mlflow_reader_rebuilds_points_from_metrics(mlflow_sweep, sweep_dir, tmp_path):
    from pareto_bench.analysis.report.mlflow_source import load_mlflow_run

    _, uri, parent = mlflow_sweep
    sweep = load_mlflow_run(parent, uri, dest=tmp_path / "download")
    original = load_sweep_dir(sweep_dir)
    assert [t.record.name for t in sweep.trials] == [t.record.name for t in original.trials]
    grpo, grpo_original = sweep.baseline("grpo"), original.baseline("grpo")
    assert grpo_original.evals[0].samples and not grpo.evals[0].samples  # rebuilt, not copied
    for task in TASKS:
        np.testing.assert_allclose(grpo.points(task), grpo_original.points(task))
        assert [r.threshold for r in grpo.task_records(task)] == [0.5, 0.7, 0.9]
    assert sweep.meta["parent_run_id"] == parent
    with pytest.raises(FileNotFoundError, match="not found"):
        load_mlflow_run("f" * 32, uri, dest=tmp_path / "none")


def test_mlflow_reader_takes_untagged_baselines_from_the_sweeps_spec(tmp_path):
    from types import SimpleNamespace

    from pareto_bench.analysis.report.mlflow_source import _baselines, _trial_record

    def kind(name: str, baselines: tuple[str, ...]) -> str:
        data = SimpleNamespace(tags={}, metrics={}, params={})  # no "kind" tag
        info = SimpleNamespace(run_name=name, run_id="r", status="FINISHED")
        return _trial_record(SimpleNamespace(info=info, data=data), 1, baselines).kind

    spec = tmp_path / "spec.yaml"
    assert _baselines(spec) == BASELINES  # no spec.yaml: the spec's default
    spec.write_text("name: s\nbaselines: [base, no_nll]\n", encoding="utf-8")
    listed = _baselines(spec)
    assert [kind(n, listed) for n in ("base", "no_nll", "grpo", "trial 3")] == [
        BASELINE, BASELINE, TRIAL, TRIAL,
    ]  # fmt: skip


def test_cli_compare_reads_an_mlflow_run(mlflow_sweep, sweep_dir, tmp_path):
    root, uri, parent = mlflow_sweep
    done = run_cli("compare", parent, sweep_dir / "trials" / "0", "--tracking-uri", uri, "--json",
                   "--n-boot", "50", cwd=root, tmpdir=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["a"] == f"run {parent[:8]}"
    # A sweep's side is its trials' frontier, scored as a frontier (several curves mixed).
    for comparison in result["tasks"].values():
        assert comparison["aup_method_a"] == "frontier" and comparison["aup_diff"]["low"] > 0
    assert list(tmp_path.iterdir()) == []  # the downloaded artifacts are cleaned up


# ---------------------------------------------------------------------------------- CLI


def test_cli_frontier_json_and_table(sweep_dir, tmp_path):
    done = run_cli("frontier", sweep_dir, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    sweep = load_sweep_dir(sweep_dir)
    for task in TASKS:
        data = result["tasks"][task]
        every = F.record_points([r for t in sweep.trials for r in t.task_records(task)])
        front = np.array([(p["tpf"], p["accuracy"]) for p in data["frontier"]])
        # Nothing recorded dominates a reported point, and every reported point was recorded.
        assert not F.dominance_matrix(every, front).any()
        assert all((every == p).all(axis=1).any() for p in front)
        assert data["hypervolume"] == pytest.approx(F.hypervolume(every, HV_REFERENCE))
        assert data["aup"][0]["source"] == f"fixture-sweep/trial {BEST_TRIAL}"
        assert data["aup"][0]["method"] == "curve"
        assert [row["aup"] for row in data["aup"]] == sorted(
            (row["aup"] for row in data["aup"]), reverse=True
        )

    table = run_cli("frontier", sweep_dir / "trials" / "3" / "eval.jsonl", sweep_dir / "trials" / "0",
                    cwd=tmp_path)  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert "gsm8k: non-dominated points" in table.stdout and "hypervolume" in table.stdout
    assert "fixture-sweep/trial 3" in table.stdout and "fixture-sweep/trial 0" in table.stdout


def test_cli_compare_json_table_and_plot(sweep_dir, tmp_path):
    trials = sweep_dir / "trials"
    done = run_cli("compare", trials / "3", trials / "0" / "eval.jsonl", "--json", "--n-boot", "200",
                   "--plot", tmp_path / "cmp.png", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["a"] == "fixture-sweep/trial 3" and result["b"] == "fixture-sweep/trial 0"
    for task in TASKS:
        c = result["tasks"][task]
        assert c["paired"] and c["aup_diff"]["low"] > 0 and c["hypervolume_diff"]["low"] > 0
        assert c["dominating_share"] == 1.0 and c["aup_method_a"] == "curve"
    assert (tmp_path / "cmp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    table = run_cli("compare", sweep_dir, trials / "0", "--n-boot", "100", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "A - B [95% CI]" in table.stdout and "hypervolume" in table.stdout


def test_cli_compare_of_a_replicated_trial_resamples_its_seeds(sweep_dir, tmp_path):
    trials = sweep_dir / "trials"  # grpo (1) was trained with seeds 0 and 1; base (0) once
    done = run_cli("compare", trials / "1", trials / "0", "--json", "--n-boot", "200", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    over_seeds = json.loads(done.stdout)["over_seeds"]
    for task in TASKS:
        c = over_seeds[task]
        assert (c["seeds_a"], c["seeds_b"], c["problems"], c["paired"]) == (2, 1, PROBLEMS, True)
        assert c["aup_diff"]["n_resamples"] == 200
    table = run_cli("compare", trials / "1", trials / "0", "--n-boot", "100", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "resamples A's 2 and B's 1 seeds, then 40 problems (100 replicates)" in table.stdout
    # Neither side replicated: nothing over seeds.
    plain = run_cli("compare", trials / "3", trials / "0", "--json", "--n-boot", "50", cwd=tmp_path)
    assert json.loads(plain.stdout)["over_seeds"] == {}


def test_cli_report_writes_the_pdf(sweep_dir, tmp_path):
    done = run_cli("report", sweep_dir, "--n-boot", "100", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    pdf = tmp_path / "reports" / "out" / "fixture-sweep.pdf"
    assert f"report: {pdf.relative_to(tmp_path)}" in done.stdout
    assert len(PdfReader(pdf).pages) == 1 + len(TASKS) + 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report"], "give either SWEEP_DIR or --mlflow-run"),
        (["report", "missing-dir"], "no such sweep directory"),
        (["compare", "missing.jsonl", "also-missing"], "missing.jsonl: no such file or directory"),
        (["frontier", "{sweep}", "--ref", "one"], "--ref 'one': expected TPF,ACCURACY"),
        (["compare", "{sweep}/sweep.json", "{sweep}"], "sweep.json: holds no EvalRecord rows"),
    ],
)
def test_cli_user_errors_are_one_line(args, message, sweep_dir, tmp_path):
    done = run_cli(*[a.replace("{sweep}", str(sweep_dir)) for a in args], cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: ") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_cli_bench_commands_print_json(tmp_path):
    done = run_cli("bench", "frontier", "--points", "5000", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["n_points"] == 5000 and isinstance(result["within_target"], bool)
    assert set(result["seconds"]) == {"uniform", "all_non_dominated"}

    done = run_cli("bench", "report", "--trials", "4", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["trials"] == 4 and result["pages"] >= 7 and result["report_s"] > 0


# ----------------------------------------------------------------------------- templates


def test_the_paper_template_sets_the_sweep_beside_the_published_table(sweep_dir, tmp_path):
    done = run_cli(
        "report", sweep_dir, "--template", "paper", "--n-boot", "100", "--out", "paper.pdf",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    texts = page_texts(tmp_path / "paper.pdf")
    assert "fixture-sweep beside the published LightningRL results" in texts[0]
    published = [i for i, t in enumerate(texts) if "Against the published results" in t]
    frontiers = [i for i, t in enumerate(texts) if "Frontier: " in t]
    assert published and frontiers and max(published) < min(frontiers)  # the template's order
    table = " ".join(texts[i] for i in published)
    assert "this sweep (fixture-sweep)" in table and "(best trial)" in table
    assert "252.5" in table  # SDAR-8B-b32 on GSM8K, the paper's main table
    assert "492.4" in table  # LightningRL on GSM8K, the ablation table
    assert not any("fANOVA" in t or "Provenance" in t for t in texts)  # pages it does not list


def test_a_template_chooses_pages_baseline_and_overlays(sweep_dir, tmp_path, monkeypatch):
    from pareto_bench.analysis.report import build, plots
    from pareto_bench.analysis.report.pdf import FigurePage

    path = tmp_path / "mine.yaml"
    path.write_text(
        "title: 'Only frontiers of {sweep}'\npages: [frontiers]\ncompare_to: grpo\n"
        "baselines: [grpo]\npublished: []\n"
    )
    drawn = []
    real = plots.frontier_figure
    monkeypatch.setattr(
        plots,
        "frontier_figure",
        lambda task, trials, baselines, published: (
            drawn.append(([b.label for b in baselines], published))
            or real(task, trials, baselines, published)
        ),
    )
    content = build.build_content(load_sweep_dir(sweep_dir), load_template(path), n_boot=50)
    assert content.title == "Only frontiers of fixture-sweep"
    assert "against grpo" in content.verdict
    assert all(
        isinstance(s, FigurePage) and s.title.startswith("Frontier") for s in content.sections
    )
    assert drawn and all(labels == ["grpo"] and published == [] for labels, published in drawn)


def test_a_bad_template_is_one_line_naming_the_file_and_field(sweep_dir, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "title: x\npages: [summary, tables]\ncompare_to: base\nbaselines: all\npublished: []\n"
    )
    done = run_cli("report", sweep_dir, "--template", path, cwd=tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "bad.yaml" in done.stderr and "pages" in done.stderr and "tables" in done.stderr
    missing = run_cli("report", sweep_dir, "--template", "nonesuch", cwd=tmp_path)
    assert missing.returncode == 2 and "reports/nonesuch.yaml" in missing.stderr
