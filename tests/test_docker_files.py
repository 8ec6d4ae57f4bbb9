"""The Dockerfile and compose file, checked as far as this machine allows (no Docker engine):
hadolint, Debian's docker-compose parser, and the image's install steps replayed in a clean
virtual environment that then serves the shipped weights."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", "Dockerfile"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_cpu_only_non_root_with_weights_and_a_healthcheck() -> None:
    assert DOCKERFILE.startswith("#") and "FROM python:3.11-slim" in DOCKERFILE
    assert "whl/cpu" in DOCKERFILE and "torch==2.13.0" in DOCKERFILE
    assert "COPY weights ./weights" in DOCKERFILE
    user_lines = [line for line in DOCKERFILE.splitlines() if line.startswith("USER ")]
    assert user_lines and user_lines[-1] not in ("USER root", "USER 0")
    assert "HEALTHCHECK" in DOCKERFILE and "/health" in DOCKERFILE
    for name in ("weights", "classifier"):  # the shipped files, where the image has them
        default = Path(getattr(Settings(), name))
        lines = [line for line in DOCKERFILE.splitlines() if f"PIXELCNN_{name.upper()}=" in line]
        assert lines and lines[0].split("=", 1)[1].split()[0] == f"/srv/weights/{default.name}", name
        assert (ROOT / "weights" / default.name).is_file()


def test_compose_file_parses_and_uses_real_settings() -> None:
    # Debian's docker-compose validates the file against the compose schema without an engine.
    result = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    service = config["services"]["pixelcnn"]
    assert service["restart"] == "unless-stopped"
    # Published on the host's loopback only: serving others is a choice (API keys, README).
    assert service["ports"] == ["127.0.0.1:8000:8000/tcp"], service["ports"]
    assert "/health" in " ".join(service["healthcheck"]["test"])
    fields = {name.upper() for name in Settings.model_fields}
    for variable in service["environment"]:
        assert variable.startswith("PIXELCNN_") and variable[len("PIXELCNN_") :] in fields, variable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_image_install_steps_work_in_a_clean_venv(tmp_path: Path) -> None:
    # The Dockerfile's steps: torch 2.13.0 (CPU), then `pip install .`, then `python -m app`.
    # Here torch comes from this machine's local CPU wheel instead of PyTorch's CPU index.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "torch==2.13.0"], check=True, timeout=900)
    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "runs", "tests", "docs", "__pycache__", "*.egg-info", "build"
        ),
    )
    subprocess.run([*pip, str(source)], check=True, timeout=900)
    port = free_port()
    env = {
        **os.environ,  # the image's ENV lines: the shipped files, wherever they were copied
        "PIXELCNN_WEIGHTS": str(source / "weights" / Path(Settings().weights).name),
        "PIXELCNN_CLASSIFIER": str(source / "weights" / Settings().classifier.name),
    }
    server = subprocess.Popen(
        [str(venv / "bin" / "python"), "-m", "app", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
            time.sleep(0.5)
        else:
            pytest.fail("the installed service never became ready")
        r = httpx.post(f"http://127.0.0.1:{port}/generate", json={"n": 1, "seed": 0}, timeout=60)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    finally:
        server.terminate()
        server.wait(timeout=30)
