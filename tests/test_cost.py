"""The cost estimate: every planned job priced, the total their sum, errors named."""

from __future__ import annotations

import math

import pytest
import yaml
from conftest import REPOSITORY

from smoothbench import cli, cost, registry
from smoothbench.config import ConfigError
from smoothbench.study import load_study, load_study_file

RATES = [
    cost.Rate("resnet_v2-83", 72, 400.0, "test"),
    cost.Rate("resnet_v2-83", 32, 1500.0, "test"),
    cost.Rate("resnet_v1-20", 32, 6000.0, "test"),
]


def test_every_registry_dataset_has_split_sizes():
    assert set(cost.SPLIT_SIZES) == set(registry.DATASETS)


def test_the_papers_bill_is_the_sum_of_its_jobs():
    study = load_study_file(REPOSITORY / "config.yaml")
    rows = cost.plan(study, RATES, prepared_root=None)
    assert len(rows) == len(study.runs()) == 108
    total = sum(row["gpu_hours"] for row in rows)
    assert (
        cost.render(rows).splitlines()[-2]
        == f"total: 108 training jobs, {total:,.1f} GPU-hours"
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


def test_runs_sharing_a_gpu_pay_their_share_of_its_hours():
    config = yaml.safe_load((REPOSITORY / "config.yaml").read_text())
    alone = cost.plan(load_study(config), RATES, prepared_root=None)
    config["compute"]["runs_per_gpu"] = 4
    shared = cost.plan(load_study(config), RATES, prepared_root=None)
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
        cost.CostError,
        match=r"no throughput for resnet_v1-20 .*--rate resnet_v1-20@72=",
    ):
        cost.plan(study, RATES[:2], prepared_root=None)


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
    assert cost.split_sizes(study, "digits", tmp_path)[:2] == (100, 50)
    assert cost.split_sizes(study, "digits", tmp_path / "missing")[:2] == (1437, 360)


def test_the_command_prints_the_bill(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert (
        cli.cost_main(
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
    assert "total: 108 training jobs" in printed
    import csv

    with open("jobs.csv") as handle:
        jobs = list(csv.DictReader(handle))
    total = float(
        printed.split("total: 108 training jobs, ")[1]
        .split(" GPU-hours")[0]
        .replace(",", "")
    )
    assert math.isclose(
        sum(float(job["gpu_hours"]) for job in jobs), total, abs_tol=0.05
    )
    assert (
        cli.cost_main(
            [
                "--configfile",
                str(REPOSITORY / "config.yaml"),
                "--rate",
                "resnet_v2-83@72",
            ]
        )
        == 1
    )
    assert "expected NETWORK@SIDE=IMAGES_PER_SECOND" in capsys.readouterr().err


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
    rates = {(rate.network, rate.side): rate for rate in cost.read_benchmark(path)}
    # the median of 200, 260, 210
    assert rates[("resnet_v1-20", 32)].images_per_second == 210
    assert "median of 3" in rates[("resnet_v1-20", 32)].source
    assert rates[("resnet_v2-83", 72)].images_per_second == 5
    assert [
        rate.images_per_second for rate in cost.read_benchmark(path, "ours-jax")
    ] == [300]
    with pytest.raises(cost.CostError, match="no 'ours-xla' rows"):
        cost.read_benchmark(path, "ours-xla")
