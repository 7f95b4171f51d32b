"""Get a dataset into the TFDS data dir: from the internet, from a local folder, or not at all.

The download step never retries silently. Before any network transfer it checks,
within ``network_timeout_seconds``, that the dataset's servers answer; if they do not
(or downloads are switched off) it stops at once with a message naming the files to
fetch and the config key that points smoothbench at them.
"""

from __future__ import annotations

import datetime
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from smoothbench.config import ConfigError
from smoothbench.data import image_folder
from smoothbench.data.array_store import sha256_of_file
from smoothbench.data.own_datasets import check_splits
from smoothbench.data.registry import DatasetSpec, spec_from_settings
from smoothbench.errors import SmoothbenchError

# The test suite's switch for tfds.testing.mock_data (examples per split): not a config
# key, since no study of a user's reads random images.
MOCK_DATA_VARIABLE = "SMOOTHBENCH_TEST_MOCK_EXAMPLES"


def mock_data(environment: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Whether the data stage replaces every TFDS read with tfds.testing.mock_data, and
    with how many examples per split (tests only: :data:`MOCK_DATA_VARIABLE`)."""
    environment = os.environ if environment is None else environment
    text = environment.get(MOCK_DATA_VARIABLE, "")
    if not text:
        return {"enabled": False}
    if not text.isdigit() or int(text) < 1:
        raise SmoothbenchError(
            f"environment variable {MOCK_DATA_VARIABLE}={text!r}: the number of mock "
            "examples per split, a whole number of at least 1"
        )
    return {"enabled": True, "num_examples": int(text)}


class DownloadError(SmoothbenchError, RuntimeError):
    """A dataset that cannot be obtained; the message says what to do."""


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def probe_hosts(hosts, timeout: float) -> str | None:
    """Open and close a TCP connection to each (host, port); describe the first failure.

    An HTTP(S) proxy from the environment is probed instead of the hosts themselves.
    ``SMOOTHBENCH_NETWORK_PROBE=host:port`` replaces every host (for tests and for
    sites that reach the internet through one gateway).
    """
    override = os.environ.get("SMOOTHBENCH_NETWORK_PROBE")
    proxy = (
        os.environ.get("HTTPS_PROXY")
        or os.environ.get("https_proxy")
        or os.environ.get("HTTP_PROXY")
        or os.environ.get("http_proxy")
    )
    if override:
        host, _, port = override.rpartition(":")
        hosts = [(host, int(port))]
    elif proxy:
        parsed = urlparse(proxy if "://" in proxy else "http://" + proxy)
        hosts = [(parsed.hostname, parsed.port or 80)]
    for host, port in hosts:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                pass
        except OSError as error:
            reason = (
                "timed out"
                if isinstance(error, TimeoutError | socket.timeout)
                else (error.strerror or str(error))
            )
            return f"cannot connect to {host}:{port} within {timeout:g} s ({reason})"
    return None


def missing_message(spec: DatasetSpec, data_dir: str, reason: str) -> str:
    # said of a dataset whose TFDS builder could not be prepared: it has a TFDS name
    assert spec.tfds_name is not None
    if spec.own:
        return (
            f"dataset {spec.name!r} (TFDS {spec.tfds_name}, config key 'datasets.{spec.name}') is not "
            f"built in the TFDS data dir {data_dir}, and it cannot be downloaded: {reason}.\n"
            f"Build it on a machine with network access (tfds build {spec.tfds_name} --data_dir DIR) "
            f"and copy the folder {spec.tfds_name.split('/')[0]}/ of DIR into {data_dir}."
        )
    lines = [
        f"dataset {spec.name!r} ({spec.tfds_name}) is not built in the TFDS data dir {data_dir}, "
        f"and it cannot be downloaded: {reason}.",
        "To prepare it without network access, fetch these files on a machine that has it:",
        *(f"  {url}" for url in spec.source_urls),
        "put them together in one folder on this machine, and name that folder in the config:",
        "  data:",
        "    source_dirs:",
        f"      {spec.name}: /path/to/that/folder",
        f"(Or copy a finished TFDS build - the folder {spec.tfds_name.split('/')[0]}/ of another "
        f"machine's data dir - into {data_dir}.)",
    ]
    if spec.note:
        lines.append(spec.note)
    return "\n".join(lines)


def _builder(spec: DatasetSpec, data_dir: str | None):
    import tensorflow_datasets as tfds

    return tfds.builder(spec.tfds_name, data_dir=data_dir)


def _split_counts(builder) -> dict[str, int]:
    return {name: int(info.num_examples) for name, info in builder.info.splits.items()}


def download(settings: dict, network: dict) -> dict:
    """Make ``settings['dataset']`` readable by the prepare step; return a record of how.

    ``settings`` is :meth:`smoothbench.study.Study.download_settings`, ``network``
    :meth:`smoothbench.study.Study.network_settings`.
    """
    spec = spec_from_settings(settings)
    if spec.source == "folder":
        return _survey_folder(spec)
    record: dict[str, Any] = {
        "dataset": spec.name,
        "source": spec.source,
        "tfds_name": spec.tfds_name,
        "finished": None,
    }
    if spec.source == "sklearn":
        from sklearn.datasets import load_digits

        digits = load_digits()
        record.update(mode="bundled", examples=len(digits.target), finished=now())
        return record
    if settings["mock"]["enabled"]:
        record.update(
            mode="mock", num_examples=settings["mock"]["num_examples"], finished=now()
        )
        return record

    import tensorflow_datasets as tfds

    builder = _builder(spec, settings["tfds_data_dir"])
    data_dir = str(builder.data_dir_root)
    record.update(tfds_data_dir=data_dir, tfds_version=str(builder.version))
    source_dir = settings.get("source_dir")
    if builder.is_prepared():
        record["mode"] = "already-built"
    elif source_dir:
        folder = Path(os.path.expanduser(source_dir))
        missing = [
            name for name in spec.source_filenames if not (folder / name).is_file()
        ]
        if missing:
            raise DownloadError(
                f"config key 'data.source_dirs.{spec.name}' names {folder}, which lacks "
                f"{', '.join(missing)}; it must hold: {', '.join(spec.source_filenames)}"
            )
        if spec.url_attribute:
            # The builder joins its class attribute URL with the file names: a local
            # folder stands in for the server, read with a file copy, no upstream checksum.
            builder.URL = str(folder) + "/"
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                manual_dir=str(folder), try_download_gcs=False
            )
        )
        record.update(
            mode="source-dir",
            source_dir=str(folder),
            source_files={
                name: sha256_of_file(folder / name) for name in spec.source_filenames
            },
        )
    else:
        if not network["download"]:
            raise DownloadError(
                missing_message(
                    spec,
                    data_dir,
                    "downloads are switched off (config key 'data.download' is false)",
                )
            )
        # A study's own builder names no hosts: its download is tried, its failure said.
        failure = probe_hosts(spec.source_hosts, network["network_timeout_seconds"])
        if failure:
            raise DownloadError(missing_message(spec, data_dir, failure))
        try:
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(try_download_gcs=False)
            )
        except Exception as error:
            if not spec.own:
                raise
            raise DownloadError(
                missing_message(spec, data_dir, f"{type(error).__name__}: {error}")
            ) from None
        record["mode"] = "downloaded"
    if spec.own:  # its splits are known now: the names the config gives must exist
        try:
            check_splits(spec, sorted(builder.info.splits.keys()))
        except ConfigError as error:
            raise DownloadError(str(error)) from None
    record.update(splits=_split_counts(builder), finished=now())
    return record


def _survey_folder(spec: DatasetSpec) -> dict:
    """A study's folder of images: every file read once, its sha256 recorded."""
    key = f"datasets.{spec.name}"
    assert spec.folder is not None  # a dataset of source "folder" names its folder
    layout = image_folder.read_layout(spec.folder, key, spec.validation_fraction)
    if layout.class_names != spec.class_names:
        raise image_folder.ImageFolderError(
            f"the class folders of {spec.folder} changed since the workflow was planned "
            f"({', '.join(spec.class_names)} then, {', '.join(layout.class_names)} now); run it again"
        )
    record = {"dataset": spec.name, "source": "folder", "mode": "folder"}
    record.update(image_folder.survey(layout, key, spec.image_size))
    if record["channels"] != spec.channels:
        raise image_folder.ImageFolderError(
            f"the images of {spec.folder} have {record['channels']} channel(s), its first one "
            f"{spec.channels} when the workflow was planned; run it again"
        )
    record["finished"] = now()
    return record
