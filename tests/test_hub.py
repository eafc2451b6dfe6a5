"""Offline, a hub name fails at once (issue 18, item 6): data.hub.check_hub_sources on the composed config
names the key, the name, why, and the offline choices, in well under 3 s and without importing torch."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from data.hub import check_hub_sources, hub_name_problem, hub_unreachable, in_local_cache
from runners.validate import ConfigError, compose_config

ROOT = Path(__file__).resolve().parent.parent
LLAMA = ["model=hf", "model.name=meta-llama/Llama-2-7b-hf", "method=h2o"]
ALPACA = ["method=alpagasus", "method.data=tatsu-lab/alpaca"]


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """HF_HUB_OFFLINE=1 and an empty HF cache of our own (the machine's cache must not decide)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for name in ("HF_HUB_CACHE", "HF_DATASETS_CACHE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "hf"


def test_an_offline_hub_model_fails_with_its_name_why_and_the_offline_models(offline: Path) -> None:
    cfg = compose_config(LLAMA)
    start = time.monotonic()
    with pytest.raises(ConfigError) as err:
        check_hub_sources(cfg)
    assert time.monotonic() - start < 3
    message = str(err.value)
    assert "model.name='meta-llama/Llama-2-7b-hf'" in message and "HF_HUB_OFFLINE" in message
    assert "not in the local cache" in message and "model=smollm2_135m" in message


def test_an_offline_hub_dataset_fails_with_the_offline_data_choices(offline: Path) -> None:
    with pytest.raises(ConfigError) as err:
        check_hub_sources(compose_config(ALPACA))
    message = str(err.value)
    assert "method.data='tatsu-lab/alpaca'" in message and "hub dataset" in message
    assert "method.data=generated" in message and ".jsonl" in message


def test_an_offline_grader_model_by_hub_name_fails(offline: Path) -> None:
    grader = ["method.grading=generate", "method.grader.model=Qwen/Qwen2-0.5B"]
    cfg = compose_config(["method=alpagasus", *grader])
    with pytest.raises(ConfigError, match=r"method\.grader\.model='Qwen/Qwen2-0.5B'.*smollm2_135m"):
        check_hub_sources(cfg)


@pytest.mark.parametrize("overrides", [["method=ifd"], ["method=alpagasus"], ["method=h2o"], []])
def test_the_offline_defaults_pass(offline: Path, overrides: list[str]) -> None:
    check_hub_sources(compose_config(overrides))


def test_local_paths_and_cached_names_are_fine_offline(offline: Path, tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    check_hub_sources(compose_config(["model=hf", f"model.name={folder}", "method=h2o"]))
    assert hub_name_problem("./not-yet-there") is None  # a path: its own loader reports it
    # a snapshot in the HF cache, as from_pretrained / load_dataset leave it
    assert not in_local_cache("meta-llama/Llama-2-7b-hf")
    (offline / "hub" / "models--meta-llama--Llama-2-7b-hf" / "snapshots" / "abc").mkdir(parents=True)
    assert in_local_cache("meta-llama/Llama-2-7b-hf")
    check_hub_sources(compose_config(LLAMA))
    (offline / "datasets" / "tatsu-lab___alpaca" / "default").mkdir(parents=True)
    check_hub_sources(compose_config(ALPACA))


class _Head(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_without_the_offline_variable_one_head_request_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Head)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    assert hub_unreachable() is None
    server.shutdown()
    server.server_close()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}/gone")  # nothing listens there now
    start = time.monotonic()
    why = hub_unreachable()
    assert why is not None and "could not be reached" in why and time.monotonic() - start < 3


def test_the_check_imports_neither_torch_nor_transformers(offline: Path) -> None:
    code = (
        "import sys, time\n"
        "t = time.monotonic()\n"
        "from runners.validate import compose_config, ConfigError\n"
        "from data.hub import check_hub_sources\n"
        f"cfg = compose_config({LLAMA!r})\n"
        "try:\n    check_hub_sources(cfg)\nexcept ConfigError:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]\n"
        "print(heavy, time.monotonic() - t)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    heavy, seconds = out.stdout.split("]")
    assert heavy == "[" and float(seconds) < 3
