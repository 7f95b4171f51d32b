"""The results stage through the real Snakefile: the demo's tables, plots and report;
regenerating them never trains; a bad run file stops aggregation with its name."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import (
    DEMO_RESULTS,
    REPOSITORY,
    copy_of_demo,
    demo_command,
    workflow_command,
)

from smoothbench.results.collection import RUNS_COLUMNS, RUNS_FILE
from smoothbench.results.paper_tables import OUTPUT_FILES

pytestmark = pytest.mark.workflow

FIGURES = [
    "accuracy_vs_gamma",
    "gain_over_baseline",
    "training_curves/digits",
    "reliability/digits",
    "c_matrix/digits/lspp~0.1",
]


def embedded_files(path: Path) -> list[tuple[str, bytes]]:
    """(filename, content) of every file embedded in a Snakemake HTML report (data URIs);
    two figures may share a file name (training_curves/digits.png, reliability/digits.png)."""
    text = path.read_text()
    found = re.findall(
        r"data:[\w.+/-]+;charset=[^;\"']*;filename=([^;\"']+);base64,([A-Za-z0-9+/=]+)",
        text,
    )
    return [(name, base64.b64decode(data)) for name, data in found]


def report_files(path: Path) -> dict[str, bytes]:
    """filename -> content of the files embedded in a Snakemake HTML report (one per name)."""
    return dict(embedded_files(path))


def planned_rules(workdir: Path, *arguments: str) -> list[str]:
    """The rule of every job a dry run plans (sorted; 'all' left out)."""
    process = subprocess.run(
        demo_command(workdir, "--dry-run", *arguments), capture_output=True, text=True
    )
    assert process.returncode == 0, process.stdout + process.stderr
    rules = re.findall(r"^(?:local)?rule (\w+):", process.stdout, re.MULTILINE)
    return sorted(rule for rule in rules if rule != "all")


def test_the_demo_ends_in_tables_and_plots_traced_to_its_runs(demo):
    workdir, _ = demo
    tables = workdir / DEMO_RESULTS / "tables"
    for name in OUTPUT_FILES:
        assert (tables / name).stat().st_size > 0, name
    for stem in FIGURES:
        for suffix in ("png", "pdf"):
            assert (
                workdir / DEMO_RESULTS / "plots" / f"{stem}.{suffix}"
            ).stat().st_size > 1000
    table2 = pd.read_csv(tables / "table2.csv")
    assert sorted(zip(table2["gamma"], table2["seed"])) == [
        (gamma, seed) for gamma in (0.6, 0.7, 0.8, 0.9, 1.0) for seed in (0, 1)
    ]
    for record in table2.itertuples():  # every number traces back to its run's file
        metrics = json.loads((workdir / record.metrics_file).read_text())
        assert record.best_val_accuracy_percent == pytest.approx(
            100 * metrics["best_val_accuracy"]
        )
        assert (
            record.best_epoch == metrics["best_epoch"]
            and metrics["seed"] == record.seed
        )
    markdown = (tables / "table2.md").read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("| digits"))
    by_gamma = table2.groupby("gamma")["best_val_accuracy_percent"]
    means, stds = by_gamma.mean(), by_gamma.std(ddof=1)
    expected = [
        f"{means[gamma]:.2f} ± {stds[gamma]:.2f}" for gamma in sorted(means.index)
    ]
    assert [cell.strip() for cell in row.strip("|").split("|")][1:] == expected
    three = pd.read_csv(tables / "table3.csv").iloc[0]
    best, base = means.max(), means[1.0]
    assert three["best_percent"] == pytest.approx(best) and three[
        "baseline_percent"
    ] == pytest.approx(base)
    assert three["diff_percent"] == pytest.approx((best - base) / best * 100, abs=1e-4)
    # The paper's own Table 3 check is in every study's comparison, the demo's included.
    assert "It does not hold for: ImageN.(a)." in (tables / "comparison.md").read_text()
    # runs.csv, which the tables read: one row per run (7 method-values x 2 seeds), the
    # rows of table2.csv among them as they are there
    runs = pd.read_csv(workdir / DEMO_RESULTS / RUNS_FILE)
    assert list(runs.columns) == RUNS_COLUMNS and len(runs) == 14
    assert runs["metrics_file"].is_unique
    gamma_runs = runs[(runs["method"] == "gamma") & (runs["gamma"] > 0.5)]
    pd.testing.assert_frame_equal(
        gamma_runs[table2.columns].reset_index(drop=True), table2
    )
    assert set(runs["backend"]) <= {"jax", "tensorflow", "torch"}


def test_the_demo_compares_three_methods_over_two_seeds(demo):
    workdir, _ = demo
    tables = workdir / DEMO_RESULTS / "tables"
    runs = workdir / DEMO_RESULTS / "runs" / "digits"
    assert sorted(path.name for path in runs.iterdir()) == [
        "alpha~0.1",
        "gamma~0.6",
        "gamma~0.7",
        "gamma~0.8",
        "gamma~0.9",
        "gamma~1.0",
        "lspp~0.1",
    ]
    calibration = pd.read_csv(tables / "calibration.csv")
    assert len(calibration) == 7 and set(calibration["seeds"]) == {2}
    # means of the two runs' own metrics.json, at their best epoch
    for record in calibration.itertuples():
        values = []
        for seed in (0, 1):
            metrics = json.loads(
                (
                    runs
                    / f"{record.method}~{record.value}"
                    / f"seed~{seed}"
                    / "metrics.json"
                ).read_text()
            )
            assert (
                metrics["calibration"]["best_epoch"]["epoch"] == metrics["best_epoch"]
            )
            values.append(metrics["calibration"]["best_epoch"]["ece"])
        assert record.ece == pytest.approx(sum(values) / 2, abs=1e-6)
    paired = pd.read_csv(tables / "paired_differences.csv")
    assert len(paired) == 6 and set(paired["seeds"]) == {
        2
    }  # every method and value but gamma = 1
    accuracy = {}
    for seed in (0, 1):
        for name in ("gamma~1.0", "lspp~0.1"):
            accuracy[name, seed] = (
                100
                * json.loads(
                    (runs / name / f"seed~{seed}" / "metrics.json").read_text()
                )["best_val_accuracy"]
            )
    lspp = paired[paired["method"] == "lspp"].iloc[0]
    differences = [
        accuracy["lspp~0.1", seed] - accuracy["gamma~1.0", seed] for seed in (0, 1)
    ]
    assert lspp["mean_difference_points"] == pytest.approx(
        sum(differences) / 2, abs=1e-4
    )
    methods = (tables / "methods.md").read_text()
    assert "| digits |" in methods and "LS++" in methods and "uniform α" in methods
    matrix = np.load(runs / "lspp~0.1" / "seed~0" / "c_matrix.npy")
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(np.diag(matrix) == 0)


def test_the_demo_report_holds_every_table_and_plot(demo):
    workdir, _ = demo
    embedded = report_files(workdir / DEMO_RESULTS / "report.html")
    for name in (
        "table1.html",
        "table2.html",
        "table3.html",
        "comparison.html",
        "methods.html",
        "calibration.html",
        "paired_differences.html",
    ):
        assert name in embedded, sorted(embedded)
        assert embedded[name] == (workdir / DEMO_RESULTS / "tables" / name).read_bytes()
    assert (
        b"<td>digits</td>" in embedded["table2.html"]
        and b"ImageN.(a)" in embedded["comparison.html"]
    )
    for name in (
        "accuracy_vs_gamma.png",
        "gain_over_baseline.png",
        "digits.png",
        "lspp~0.1.png",
    ):
        assert embedded[name].startswith(b"\x89PNG"), name
    assert (
        b"LS++" in embedded["methods.html"] and b"ECE" in embedded["calibration.html"]
    )
    # both digits.png figures (training curves, reliability) and the C heatmap, byte for byte
    plots = workdir / DEMO_RESULTS / "plots"
    pngs = {
        content
        for _, content in embedded_files(workdir / DEMO_RESULTS / "report.html")
        if content.startswith(b"\x89PNG")
    }
    for path in (
        plots / "training_curves" / "digits.png",
        plots / "reliability" / "digits.png",
        plots / "c_matrix" / "digits" / "lspp~0.1.png",
    ):
        assert path.read_bytes() in pngs, path
    text = (workdir / DEMO_RESULTS / "report.html").read_text()
    assert (
        "Training curves" in text
        and "best validation accuracy" in text
        and "Calibration" in text
    )


def test_tables_and_plots_regenerate_without_training(demo, tmp_path):
    workdir = copy_of_demo(demo, tmp_path / "demo")
    assert planned_rules(workdir) == []  # touching nothing plans nothing
    table = workdir / DEMO_RESULTS / "tables" / "table1.md"
    before = (workdir / DEMO_RESULTS / "tables" / "table2.md").read_text()
    table.unlink()
    assert planned_rules(workdir) == ["aggregate"]
    (workdir / DEMO_RESULTS / "plots" / "training_curves" / "digits.png").unlink()
    assert planned_rules(workdir) == ["aggregate", "plot_training_curves"]
    process = subprocess.run(
        demo_command(workdir, "--cores", "2"), capture_output=True, text=True
    )
    assert process.returncode == 0, process.stdout + process.stderr
    assert not re.search(r"^(?:local)?rule train:", process.stderr, re.MULTILINE)
    assert (
        table.exists()
        and (workdir / DEMO_RESULTS / "tables" / "table2.md").read_text() == before
    )
    assert planned_rules(workdir) == []


def test_a_malformed_run_file_stops_collect_runs_with_its_name(demo, tmp_path):
    workdir = copy_of_demo(demo, tmp_path / "demo")
    metrics = (
        workdir
        / DEMO_RESULTS
        / "runs"
        / "digits"
        / "gamma~0.8"
        / "seed~0"
        / "metrics.json"
    )
    payload = json.loads(metrics.read_text())
    del payload["best_val_accuracy"]
    metrics.write_text(json.dumps(payload))
    # runs.csv is made again, then the tables from it; no retraining planned either
    assert planned_rules(workdir, "--until", "aggregate") == [
        "aggregate",
        "collect_runs",
    ]
    process = subprocess.run(
        demo_command(workdir, "--cores", "1", "--until", "aggregate"),
        capture_output=True,
        text=True,
    )
    assert process.returncode != 0
    output = process.stdout + process.stderr
    assert (
        "results/demo/runs/digits/gamma~0.8/seed~0/metrics.json: has no 'best_val_accuracy'"
        in output
    )
    # the runs are untouched: the other metrics files are still there
    assert (
        len(
            list(
                (workdir / DEMO_RESULTS / "runs").glob(
                    "digits/gamma~*/seed~0/metrics.json"
                )
            )
        )
        == 5
    )


def report_variable(path: Path, name: str):
    """A JSON variable of a Snakemake HTML report's page (``var name = ...;``), e.g.
    workflow_desc, the HTML of the page the report opens on."""
    found = re.search(
        rf"var {name} = (.*?);\n\s*</script>", path.read_text(), re.DOTALL
    )
    assert found, name
    return json.loads(found.group(1))


def test_the_demo_report_opens_on_table3_and_the_accuracy_figure(demo):
    workdir, _ = demo
    results = workdir / DEMO_RESULTS
    report = results / "report.html"
    front = report_variable(report, "workflow_desc")
    # Table 3's row, as table3.html has it (its best gamma marked where the paired
    # table finds the gain within seed noise), and the paper's Table 3 replayed
    row = re.search(
        r"<tr><td>digits</td>.*?</tr>", (results / "tables" / "table3.html").read_text()
    )
    assert row and row.group(0) in front
    three = pd.read_csv(results / "tables" / "table3.csv").iloc[0]
    paired = pd.read_csv(results / "tables" / "paired_differences.csv")
    verdicts = {
        f"{value:.1f}": verdict
        for value, verdict in zip(
            paired.loc[paired["method"] == "gamma", "value"],
            paired.loc[paired["method"] == "gamma", "verdict"],
        )
    }
    for gamma in str(three["best_gamma"]).split(", "):
        marked = verdicts.get(gamma) == "within seed noise"
        assert (f"{gamma}†" in row.group(0)) == marked, (gamma, verdicts)
    assert "Table 3: this study" in front and "replayed from its Tables 1-2" in front
    assert "12 of 13 rows hold; not: ImageN.(a)." in front
    assert "scikit-learn&#x27;s bundled 8x8 digits" in front
    # the accuracy-vs-gamma figure itself, embedded in the page, between the two
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', front)
    assert [base64.b64decode(data) for data in embedded] == [
        (results / "plots" / "accuracy_vs_gamma.png").read_bytes()
    ]
    assert (
        front.index("Table 3: this study")
        < front.index("data:image/png")
        < front.index("replayed from its Tables 1-2")
    )
    # every table's csv is in the report beside its html, under one category scheme
    categories = report_variable(report, "categories")
    accuracy = categories["Accuracy"]["Tables"]
    for name in ("table1", "table2", "table3", "comparison"):
        for suffix in ("csv", "html"):
            assert str(DEMO_RESULTS / "tables" / f"{name}.{suffix}") in accuracy
    assert (
        str(DEMO_RESULTS / "tables" / "paired_differences.csv")
        in categories["Seeds and methods"]["Tables"]
    )
    assert (
        str(DEMO_RESULTS / "tables" / "calibration.csv")
        in categories["Calibration"]["Tables"]
    )
    assert (
        report_files(report)["table3.csv"]
        == (results / "tables" / "table3.csv").read_bytes()
    )


def test_the_demo_writes_its_report_at_its_end_and_says_where(demo):
    """No --report flag: the workflow makes every study's report at the end of a run
    that completes it (workflow/Snakefile's onsuccess), and its last lines name it."""
    from conftest import demo_output

    workdir, _ = demo
    report = workdir / DEMO_RESULTS / "report.html"
    assert report.stat().st_size > 100_000
    lines = [line for line in demo_output(workdir).read_text().splitlines() if line]
    # after it only Snakemake's own two closing lines (its log file, the time taken)
    assert "The study's report: results/demo/report.html" in lines[-4:], lines[-10:]
    assert "The study's report" not in "\n".join(lines[:-4])
    # the header of its front page: the study's rows and seeds
    front = report_variable(report, "workflow_desc")
    assert "This study: 1 data set row\n(digits), seeds 0, 1." in front, front[:500]


def _report_of(workdir: Path, config: dict, *arguments: str) -> Path:
    """The report of a study whose every output exists (each an empty file, as
    Snakemake's --summary lists them): its pages, without a run."""
    config_file = workdir / "study.yaml"
    workdir.mkdir(parents=True, exist_ok=True)
    config_file.write_text(yaml.safe_dump(config))
    base = workflow_command(workdir, config_file, *arguments)
    summary = subprocess.run(
        [*base, "--summary"], cwd=workdir, capture_output=True, text=True
    )
    assert summary.returncode == 0, summary.stdout + summary.stderr
    for line in summary.stdout.splitlines()[1:]:
        path = workdir / line.split("\t")[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    report = workdir / "report.html"
    process = subprocess.run(
        [*base, "--report", str(report)], cwd=workdir, capture_output=True, text=True
    )
    assert process.returncode == 0, process.stdout + process.stderr
    return report


@pytest.mark.parametrize(
    "seeds, arguments, header",
    [
        (None, (), "seed 0."),  # left to the schema's default
        (None, ("--config", "seeds=[3, 4]"), "seeds 3, 4."),
        ([0, 1, 2], (), "seeds 0, 1, 2."),
    ],
)
def test_the_report_header_names_the_studys_own_seeds(
    tmp_path, seeds, arguments, header
):
    config = yaml.safe_load((REPOSITORY / "config" / "demo.yaml").read_text())
    del config["seeds"]
    if seeds is not None:
        config["seeds"] = seeds
    report = _report_of(tmp_path / "study", config, *arguments)
    front = report_variable(report, "workflow_desc")
    assert f"This study: 1 data set row\n(digits), {header}" in front, front[:500]
    assert "seeds ." not in front
