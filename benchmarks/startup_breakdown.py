"""Where a training job's time before its first step goes.

Runs, in fresh processes (``--repeats``, default 3), the start of a training job as
``workflow/scripts/train.py`` makes it, timing each part: the interpreter, the import of
Snakemake's script module (its preamble), the adapter's smoothbench imports, loading the
study, TensorFlow's and Keras' import as the job does it (after the backend, threads and
oneDNN are set; :func:`smoothbench.compute.backends.import_keras`), and the model's build
and compile (``set_up_session`` less the import). Each repeat also times, in another
child started right after, the same import with nothing held back (how the job imported
before ``import_keras``). The first step's trace and compile are read from the epochs of a
finished run's log (``--log``): the first epoch's time less the median of the others.

    python benchmarks/startup_breakdown.py --configfile config/demo.yaml \\
        --log results/demo/logs/train/digits/gamma~0.9/seed~0.log

Needs the study's prepared data (run the demo first). Prints one line per part, the
median over the repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def child_source() -> str:
    """The child's code: the adapter's imports, the study, then set_up_session's parts."""
    return r"""
import dataclasses, json, sys, time
marks = [("start", time.perf_counter())]
def mark(name):
    marks.append((name, time.perf_counter()))
import snakemake.script  # what Snakemake's preamble imports
mark("Snakemake's script module")
from smoothbench.compute.gpu_slots import claimed_slots, gpus_given
from smoothbench.pipeline.jobs import logged
from smoothbench.pipeline.ownership import checkout_identity, claim
from smoothbench.study import load_study
from smoothbench.train.loop import say, train
mark("smoothbench imports (the adapter's)")
import numpy as np, yaml
from pathlib import Path
from smoothbench.data import array_store
from smoothbench.train import session as session_module
from smoothbench.compute import backends, decisions, onednn
config_file, experiment, threads, prepared = sys.argv[1:5]
study = load_study(yaml.safe_load(open(config_file)))
compute = dataclasses.replace(
    study.compute_settings(experiment), threads_per_job=int(threads)
)
experiment_settings = study.experiments[experiment]
settings = study.run_settings(
    experiment, "gamma", str(experiment_settings.gammas[0]), study.seeds[0]
)
manifest, arrays = array_store.open_prepared(Path(prepared))
mark("loading the study and opening the data")
early = decisions.decide(compute)
backends.select_backend(early.backend)
onednn.set_environment(early.onednn, early.backend)
held_back = "--import-everything" not in sys.argv
if held_back:
    backends.import_keras()  # as the job imports it (configure_backend)
else:
    import tensorflow, keras  # with every optional package TensorFlow and Keras find
mark("TensorFlow's and Keras' import" + ("" if held_back else " (nothing held back)"))
session = session_module.set_up_session(
    settings, compute, np.asarray(arrays["mean"]), lambda line: None
)
mark("the model's build and compile")
print("MARKS " + json.dumps(marks))
"""


def first_step_seconds(log: Path) -> tuple[float, float] | None:
    """(first epoch, median of the others), in seconds, from a run's log."""
    times = [
        float(line.split()[-2])
        for line in log.read_text().splitlines()
        if line.startswith("epoch ") and line.rstrip().endswith(" s")
    ]
    if len(times) < 2:
        return None
    return times[0], statistics.median(times[1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", default="config/demo.yaml")
    parser.add_argument("--experiment", default="digits")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--log", type=Path, help="a finished run's training log")
    arguments = parser.parse_args()

    import yaml

    from smoothbench.study import load_study

    study = load_study(yaml.safe_load(Path(arguments.configfile).read_text()))
    prepared = Path(study.results_folder) / "prepared" / arguments.experiment
    if not (prepared / "manifest.json").is_file():
        print(f"{prepared}: not prepared; run the study (make demo) first")
        return 2
    parts: dict[str, list[float]] = {}
    # Each repeat also starts a child that imports TensorFlow and Keras with every
    # optional package they find (as the job did before backends.import_keras), right
    # after the job's way: the two import times side by side, under the same load.
    everything: list[float] = []
    for _ in range(arguments.repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        parts.setdefault("the interpreter (python -c pass)", []).append(
            time.perf_counter() - started
        )
        for how in ("as the job does", "--import-everything"):
            process = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    child_source(),
                    arguments.configfile,
                    arguments.experiment,
                    str(arguments.threads),
                    str(prepared),
                    how,
                ],
                capture_output=True,
                text=True,
            )
            found = [
                line
                for line in process.stdout.splitlines()
                if line.startswith("MARKS ")
            ]
            if process.returncode != 0 or not found:
                print(process.stdout[-2000:] + process.stderr[-3000:], file=sys.stderr)
                return 1
            marks = json.loads(found[0][len("MARKS ") :])
            steps = [
                (name, after - before)
                for (_, before), (name, after) in zip(marks, marks[1:])
            ]
            if how == "as the job does":
                for name, seconds in steps:
                    parts.setdefault(name, []).append(seconds)
            else:
                everything += [
                    seconds for name, seconds in steps if "nothing held back" in name
                ]
    total = 0.0
    for name, seconds in parts.items():
        median = statistics.median(seconds)
        total += median
        print(f"{name:52s} {median:6.2f} s  ({', '.join(f'{s:.2f}' for s in seconds)})")
    print(
        f"{'  (the same import, nothing held back':52s} "
        f"{statistics.median(everything):6.2f} s  ({', '.join(f'{s:.2f}' for s in everything)}))"
    )
    if arguments.log:
        epochs = first_step_seconds(arguments.log)
        if epochs:
            first, steady = epochs
            total += first - steady
            print(
                f"{'the first epoch over the others (trace, compile)':52s} "
                f"{first - steady:6.2f} s  ({first:.1f} s against {steady:.1f} s, "
                f"{arguments.log})"
            )
    print(f"{'in all, before the first steady step':52s} {total:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
