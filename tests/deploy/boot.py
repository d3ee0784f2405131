"""Start a deployment's services as local processes with exactly the command and environment
a container runtime would give them: the image's ENTRYPOINT/CMD/ENV (read from our
Dockerfiles), the compose file's or the chart's command and env, with container hostnames
mapped to loopback ports and image paths mapped to local directories."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.deploy.support import REPO
from tests.support.processes import ServiceProcess

DOCKER = REPO / "docker"


@dataclass
class Image:
    """The final stage of one of our Dockerfiles."""

    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]


def read_dockerfile(path: Path) -> Image:
    text = re.sub(r"\\\n", " ", path.read_text())
    final = re.split(r"^FROM .*$", text, flags=re.M)[-1]
    image = Image([], [], {})
    for line in final.splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                image.env[key] = value
        elif instruction == "ENTRYPOINT":
            image.entrypoint = json.loads(rest)
        elif instruction == "CMD":
            image.cmd = json.loads(rest)
    return image


SERVICES_IMAGE = read_dockerfile(DOCKER / "Dockerfile")
CHAT_CPU_IMAGE = read_dockerfile(DOCKER / "Dockerfile.chat-cpu")


def local_argv(image: Image, command: list[str] | None) -> list[str]:
    """ENTRYPOINT + (command or CMD), with files the image copies to /usr/local/bin taken from docker/."""
    argv = image.entrypoint + (command if command else image.cmd)
    return [str(DOCKER / Path(arg).name) if arg.startswith("/usr/local/bin/") else arg for arg in argv]


@dataclass
class Mapping:
    """Container world -> this machine: host:port pairs and path prefixes."""

    addresses: dict[str, str] = field(default_factory=dict)  # "redis:6379" -> "127.0.0.1:PORT"
    paths: dict[str, str] = field(default_factory=dict)  # "/data" -> "/tmp/..."
    databases: dict[str, str] = field(default_factory=dict)  # "5432/openchatkit" -> "5432/openchatkit_boot_x"

    def value(self, value: str) -> str:
        for container, local in self.addresses.items():
            value = value.replace(container, local)
        for container, local in self.databases.items():
            value = value.replace(container, local)
        for prefix in sorted(self.paths, key=len, reverse=True):
            if value == prefix or value.startswith(prefix + "/"):
                return self.paths[prefix] + value[len(prefix) :]
        return value


def container_env(image: Image, environment: dict[str, str]) -> dict[str, str]:
    """What the container's process sees: image ENV, then the deployment's env (PATH stays the image's)."""
    env = {key: value for key, value in image.env.items() if key != "PATH"}
    env.update({key: "" if value is None else str(value) for key, value in environment.items()})
    return env


def start_local(
    name: str, argv: list[str], env: dict[str, str], mapping: Mapping, own_port: tuple[int, int] | None, log_dir: Path
) -> ServiceProcess:
    """One service as a local process. `own_port`: (container port, local port) it listens on."""
    local_env = {}
    for key, value in env.items():
        value = mapping.value(value)
        if key.endswith("_HOST") and value == "0.0.0.0":
            value = "127.0.0.1"  # the container listens on all its interfaces; here loopback is enough
        if own_port and key.endswith("_PORT") and value == str(own_port[0]):
            value = str(own_port[1])
        local_env[key] = value
    # The image's PATH puts its venv first; here the test's venv is that venv, and the code is this checkout.
    local_env["PATH"] = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
    local_env["PYTHONPATH"] = str(REPO)
    process = ServiceProcess(name, argv, {}, log_dir)
    process.env = local_env  # exactly this environment, nothing inherited from the test
    return process.start()


def healthcheck(process: ServiceProcess) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK, run against the process as it would run against pid 1."""
    return subprocess.run(
        [sys.executable, str(DOCKER / "healthcheck.py"), "--pid", str(process.pid), "--timeout", "30"],
        env=process.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def resolve_k8s_env(env: list[dict[str, Any]], secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """A container's env as the kubelet builds it: values, secretKeyRefs, then $(VAR) references."""
    resolved: dict[str, str] = {}
    for item in env:
        if "value" in item:
            value = str(item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            data = secrets.get(ref["name"], {})
            if ref["key"] not in data:
                assert ref.get("optional"), f"{item['name']}: missing secret key {ref['key']}"
                continue
            value = data[ref["key"]]
        resolved[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: resolved.get(m.group(1), m.group(0)), value)
    return resolved


def environ_without(*names: str) -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in names}
