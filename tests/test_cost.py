"""The cost estimate: every planned job priced, the total their sum, errors named."""

from __future__ import annotations

import csv
from decimal import Decimal

import pytest
import yaml
from conftest import REPOSITORY

from smoothbench.config import ConfigError
from smoothbench.data import registry
from smoothbench.study import load_study, load_study_file
from smoothbench.tools import cost as cost_tool
from smoothbench.tools import cost_estimate

RATES = [
    cost_estimate.Rate("resnet_v2-83", 72, 400.0, "test"),
    cost_estimate.Rate("resnet_v2-83", 32, 1500.0, "test"),
    cost_estimate.Rate("resnet_v1-20", 32, 6000.0, "test"),
]


def test_every_registry_dataset_has_split_sizes():
    assert set(cost_estimate.SPLIT_SIZES) == set(registry.DATASETS)


def printed_tables(text: str) -> list[dict[str, Decimal]]:
    """The printed bill's tables in order, each row's name -> its GPU-h as printed: a
    job is named by experiment, run and seed, a subtotal by its first column."""
    tables = []
    for block in text.split("\n\n"):
        header, *lines = block.splitlines()
        if header.startswith("total:"):
            continue
        width = 3 if " seed " in header else 1
        tables.append(
            {
                " ".join(line.split()[:width]): Decimal(
                    line.split()[-1].replace(",", "")
                )
                for line in lines
            }
        )
    return tables


def printed_total(text: str) -> tuple[int, Decimal]:
    line = next(line for line in text.splitlines() if line.startswith("total: "))
    runs, hours = line.removeprefix("total: ").split(" training jobs, ")
    return int(runs), Decimal(hours.removesuffix(" GPU-hours").replace(",", ""))


def test_the_papers_bill_is_the_sum_of_its_jobs():
    study = load_study_file(REPOSITORY / "config.yaml")
    rows = cost_estimate.plan(study, RATES, prepared_root=None)
    assert len(rows) == len(study.runs()) == 108
    bill = cost_estimate.summarize(rows)
    total = sum(row["gpu_hours"] for row in rows)
    # one rounding per job: the total is within half a unit per job of the exact sum
    assert (
        abs(bill.total.units / 10**bill.decimals - total)
        <= 108 * 0.5 / 10**bill.decimals
    )
    assert cost_estimate.render(bill).splitlines()[-2] == (
        f"total: 108 training jobs, {bill.hours(bill.total.units)} GPU-hours"
    )
    # one job by hand: cifar10, ResNet v2-83 on 32 px, 200 epochs of 50,000 + 10,000 / 3 images at 1,500/s
    cifar = next(row for row in rows if row["experiment"] == "cifar10")
    assert cifar["hours"] == pytest.approx(200 * (50000 / 1500 + 10000 / 4500) / 3600)
    # imagenet (b) is ResNet-20 v1 on 72 px: scaled from 32 px by pixel count
    b = next(row for row in rows if row["experiment"] == "imagenet12_b")
    assert (
        b["images_per_second"] == pytest.approx(6000 * (32 / 72) ** 2, rel=1e-3)
        and "scaled from 32px" in b["rate_source"]
    )


def test_the_papers_subtotals_add_up_to_its_total_as_printed():
    study = load_study_file(REPOSITORY / "config.yaml")
    bill = cost_estimate.summarize(cost_estimate.plan(study, RATES, prepared_root=None))
    assert bill.total.runs == 108
    # 13 experiments; 12 datasets (ImageNet's (a) and (b) are one dataset)
    assert [subtotal.name for subtotal in bill.experiments] == list(study.experiments)
    assert len(bill.datasets) == 12
    imagenet = {subtotal.name: subtotal for subtotal in bill.experiments}
    assert next(s for s in bill.datasets if s.name == "imagenet12").units == (
        imagenet["imagenet12_a"].units + imagenet["imagenet12_b"].units
    )
    for level in (bill.experiments, bill.datasets):
        assert sum(subtotal.runs for subtotal in level) == 108
        assert sum(subtotal.units for subtotal in level) == bill.total.units

    printed = cost_estimate.render(bill, per_run=True)
    jobs, experiments, datasets = printed_tables(printed)
    runs, total = printed_total(printed)
    assert runs == 108 and len(jobs) == 108
    assert len(experiments) == 13 and len(datasets) == 12
    for table in (jobs, experiments, datasets):
        assert sum(table.values()) == total
    for name, hours in experiments.items():
        assert hours == sum(
            value for key, value in jobs.items() if key.split()[0] == name
        )
    assert (
        datasets["imagenet12"]
        == experiments["imagenet12_a"] + experiments["imagenet12_b"]
    )
    # without --per-run the same subtotals and total, and no job rows
    summary = cost_estimate.render(bill)
    assert printed.endswith(summary) and "gamma~1.0" not in summary


def test_subtotals_add_up_where_rounding_each_one_would_not():
    # three experiments of 0.334, 0.333, 0.333 GPU-hours: each rounded alone gives
    # 0.33 + 0.33 + 0.33 = 0.99 against a total of 1.00; rounded once per job they add up
    rows = [
        {"experiment": name, "dataset": name, "gpu_hours": hours}
        for name, hours in [("a", 0.334), ("b", 0.333), ("c", 0.333)]
    ]
    bill = cost_estimate.summarize(rows)
    assert bill.decimals == 2
    assert [bill.hours(subtotal.units) for subtotal in bill.experiments] == ["0.33"] * 3
    assert bill.hours(bill.total.units) == "0.99"


def test_a_bill_of_tiny_jobs_keeps_two_significant_digits():
    rows = [{"experiment": "digits", "dataset": "digits", "gpu_hours": 0.000152}] * 14
    bill = cost_estimate.summarize(rows)
    assert bill.decimals == 5 and bill.hours(bill.run_units[0]) == "0.00015"
    assert bill.hours(bill.total.units) == "0.00210"
    assert cost_estimate.bill_decimals([{"gpu_hours": 0.0969}]) == 2  # 0.10
    assert bill.hours(123456789) == "1,234.56789"
    assert bill.hours(123456789, grouping=False) == "1234.56789"


def test_runs_sharing_a_gpu_pay_their_share_of_its_hours():
    config = yaml.safe_load((REPOSITORY / "config.yaml").read_text())
    alone = cost_estimate.plan(load_study(config), RATES, prepared_root=None)
    config["compute"]["runs_per_gpu"] = 4
    shared = cost_estimate.plan(load_study(config), RATES, prepared_root=None)
    for one, four in zip(alone, shared, strict=True):
        assert four["hours"] == one["hours"] and four["runs_per_gpu"] == 4
        assert four["gpu_hours"] == pytest.approx(one["gpu_hours"] / 4)
    config["compute"]["gpus_per_job"] = 2
    with pytest.raises(
        ConfigError, match="compute.runs_per_gpu.*need compute.gpus_per_job: 1"
    ):
        load_study(config)


def test_a_network_never_measured_is_named():
    study = load_study_file(REPOSITORY / "config.yaml")
    with pytest.raises(
        cost_estimate.CostError,
        match=r"no throughput for resnet_v1-20 .*--rate resnet_v1-20@72=",
    ):
        cost_estimate.plan(study, RATES[:2], prepared_root=None)


def test_prepared_manifests_win_over_the_catalog(tmp_path):
    study = load_study(
        {
            "data": {"download": False},
            "protocol": {"model": "resnet_v1", "depth": 20},
            "experiments": {"digits": {}},
        }
    )
    folder = tmp_path / "digits"
    folder.mkdir()
    (folder / "manifest.json").write_text(
        '{"splits": {"train": {"count": 100}, "validation": {"count": 50}}}'
    )
    assert cost_estimate.split_sizes(study, "digits", tmp_path)[:2] == (100, 50)
    assert cost_estimate.split_sizes(study, "digits", tmp_path / "missing")[:2] == (
        1437,
        360,
    )


def test_the_command_prints_the_bill(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert (
        cost_tool.main(
            [
                "--configfile",
                str(REPOSITORY / "config.yaml"),
                "--rate",
                "resnet_v2-83@72=400",
                "--rate",
                "resnet_v1-20@32=6000",
                "--rate",
                "resnet_v2-83@32=1500",
                "--csv",
                "jobs.csv",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    runs, total = printed_total(printed)
    assert runs == 108
    assert "gamma~1.0" not in printed  # the job rows only with --per-run
    with open("jobs.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[0] == "level"
    levels = {}
    for row in rows:
        levels.setdefault(row["level"], []).append(row)
    assert [
        len(levels[level]) for level in ("run", "experiment", "dataset", "total")
    ] == [108, 13, 12, 1]
    # every level adds up to the printed total exactly, runs and GPU-hours
    for level in ("run", "experiment", "dataset", "total"):
        assert sum(Decimal(row["gpu_hours"]) for row in levels[level]) == total
        assert sum(int(row["runs"]) for row in levels[level]) == 108
    assert printed_tables(printed)[1] == {
        row["dataset"]: Decimal(row["gpu_hours"]) for row in levels["dataset"]
    }
    assert (
        cost_tool.main(
            [
                "--configfile",
                str(REPOSITORY / "config.yaml"),
                "--rate",
                "resnet_v2-83@72",
            ]
        )
        == 2  # a user's error (smoothbench.tools.command_line)
    )
    error = capsys.readouterr().err
    assert error.startswith("smoothbench-cost: error: ")
    assert "expected NETWORK@SIDE=IMAGES_PER_SECOND" in error


def test_a_benchmark_csv_gives_the_median_of_its_rounds_per_variant(tmp_path):
    path = tmp_path / "throughput.csv"
    header = (
        "configuration,variant,round,model,depth,image_shape,images_per_second,device\n"
    )
    rows = [
        "r20,baseline,1,resnet_v1,20,32x32x3,100,CPU",
        "r20,ours,1,resnet_v1,20,32x32x3,200,CPU",
        "r20,ours,2,resnet_v1,20,32x32x3,260,CPU",
        "r20,ours,3,resnet_v1,20,32x32x3,210,CPU",
        "r20,ours-jax,1,resnet_v1,20,32x32x3,300,CPU",
        "r83,ours,1,resnet_v2,83,72x72x3,5,CPU",
    ]
    path.write_text(header + "\n".join(rows) + "\n")
    rates = {
        (rate.network, rate.side): rate for rate in cost_estimate.read_benchmark(path)
    }
    # the median of 200, 260, 210
    assert rates[("resnet_v1-20", 32)].images_per_second == 210
    assert "median of 3" in rates[("resnet_v1-20", 32)].source
    assert rates[("resnet_v2-83", 72)].images_per_second == 5
    assert [
        rate.images_per_second
        for rate in cost_estimate.read_benchmark(path, "ours-jax")
    ] == [300]
    with pytest.raises(cost_estimate.CostError, match="no 'ours-xla' rows"):
        cost_estimate.read_benchmark(path, "ours-xla")


def test_the_command_answers_from_an_empty_folder_at_the_papers_rates(tmp_path):
    """No benchmark file, no --rate: the paper's own rates, labelled, and exit 0 (the
    command a new user runs first, as installed, from a folder of their own)."""
    import subprocess
    import sys
    from pathlib import Path

    process = subprocess.run(
        [
            str(Path(sys.executable).with_name("smoothbench-cost")),
            "--configfile",
            str(REPOSITORY / "config.yaml"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    assert list(tmp_path.iterdir()) == []  # nothing measured, nothing written
    lines = process.stdout.splitlines()
    assert printed_total(process.stdout) == (108, Decimal("2127.03"))  # docs/cost.md
    assert "throughput from: the paper's rate (2 x P100)" in process.stdout
    rates = next(line for line in lines if line.startswith("rates used: "))
    assert "the paper's rates, not this machine's" in rates
    assert "1,430 images/s" in rates and "GTX 1080 Ti" in rates
    assert "154 images/s" in rates and "two P100s" in rates
    assert "docs/cost.md" in rates


def test_the_bill_says_which_rates_and_names_only_scripts_that_exist(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    demo = str(REPOSITORY / "config" / "demo.yaml")
    # a checkout: the benchmark script is named, by a path that exists
    assert cost_tool.main(["--configfile", demo]) == 0
    printed = capsys.readouterr().out
    assert "the paper's rates, not this machine's" in printed
    assert f"python {REPOSITORY / 'benchmarks' / 'benchmark_training.py'}" in printed
    # an installed package has no benchmarks/ folder: no script named, here or in errors
    monkeypatch.setattr(cost_estimate, "benchmark_script", lambda: None)
    assert cost_tool.main(["--configfile", demo]) == 0
    printed = capsys.readouterr().out
    assert "benchmark" not in printed and "--rate NETWORK@SIDE" in printed
    with pytest.raises(cost_estimate.CostError) as caught:
        cost_estimate.rate_for(cost_estimate.PAPER_RATES, "resnet_v1-56", 32)
    assert "benchmark" not in str(caught.value)
    # a measured file, where there is one, wins; the paper's rates only when asked for
    measured = tmp_path / "results" / "benchmarks" / "throughput.csv"
    measured.parent.mkdir(parents=True)
    measured.write_text(
        "configuration,variant,round,model,depth,image_shape,images_per_second,device\n"
        "r20,ours,1,resnet_v1,20,8x8x1,5000,CPU\n"
    )
    assert cost_tool.main(["--configfile", demo]) == 0
    printed = capsys.readouterr().out
    assert "throughput from: throughput.csv (CPU, ours, median of 1)" in printed
    assert "paper" not in printed
    assert cost_tool.main(["--configfile", demo, "--paper-rates"]) == 0
    assert "the paper's rates, not this machine's" in capsys.readouterr().out
    # a stated rate replaces the paper's for its network only
    assert cost_tool.main(["--configfile", demo, "--rate", "resnet_v1-20@8=900"]) == 0
    printed = capsys.readouterr().out
    assert "throughput from: stated" in printed and "rates used" not in printed
