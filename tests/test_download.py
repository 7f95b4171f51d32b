"""The reachability probe that keeps an offline download from retrying for minutes."""

from __future__ import annotations

import socket
import time

from smoothbench.data.download import missing_message, probe_hosts
from smoothbench.data.registry import get_dataset


def test_probe_reports_a_closed_port_at_once(monkeypatch):
    monkeypatch.delenv("SMOOTHBENCH_NETWORK_PROBE", raising=False)
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        closed_port = listener.getsockname()[1]
    started = time.monotonic()
    failure = probe_hosts([("127.0.0.1", closed_port)], timeout=3)
    assert failure.startswith(f"cannot connect to 127.0.0.1:{closed_port} within 3 s")
    assert time.monotonic() - started < 3


def test_probe_passes_when_the_server_answers(monkeypatch):
    monkeypatch.delenv("SMOOTHBENCH_NETWORK_PROBE", raising=False)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert probe_hosts([("127.0.0.1", port)], timeout=3) is None
        # a proxy from the environment is probed instead of the dataset's hosts
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
        assert probe_hosts([("192.0.2.1", 80)], timeout=3) is None


def test_missing_message_for_imagenet_mentions_registration():
    message = missing_message(get_dataset("imagenet12"), "/data/tfds", "no network")
    assert (
        "decathlon-1.0-data-imagenet.tar" in message and "registered users" in message
    )
    assert "imagenet12: /path/to/that/folder" in message
