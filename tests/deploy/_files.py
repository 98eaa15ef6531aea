"""Readers shared by the deployment tests: the repo's deployment files, parsed once."""

from __future__ import annotations

import functools
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
K8S = ROOT / "deploy" / "k8s"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
MAKEFILE = ROOT / "Makefile"
DOCKERFILES = ("Dockerfile.api", "Dockerfile.worker")

#: The packages a `python -m X` may name, and the worker's subcommands (CONTRACT.md).
MODULES = frozenset({"api", "worker", "migrations"})
WORKER_COMMANDS = frozenset({"relay", "cache", "thumbnails"})
#: dramatiq queues (CONTRACT.md, "Messaging"), by the worker subcommand that consumes them.
QUEUE_OF_WORKER = {"thumbnails": "thumbnails", "cache": "cache-warming"}
#: The thumbnails actor's dramatiq time limit, in seconds.
WORKER_TIME_LIMIT = 600

#: An image reference whose tag is a real version (at least major.minor), optionally with a digest.
PINNED_IMAGE = re.compile(r"^[a-z0-9./_-]+:(?P<tag>v?\d+\.\d+[A-Za-z0-9._-]*)(@sha256:[0-9a-f]{64})?$")


def pinned_tag(image: str) -> str | None:
    """The version tag of ``image`` if it is pinned (``name:1.2[.3][-variant]``), else ``None``."""
    match = PINNED_IMAGE.match(image)
    if match is None or "latest" in match["tag"]:
        return None
    return match["tag"]


@functools.cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]  # type: ignore[no-any-return]


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


@dataclass(frozen=True)
class K8sDoc:
    file: str
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.data["kind"])

    @property
    def name(self) -> str:
        return str(self.data["metadata"]["name"])

    @property
    def id(self) -> str:
        return f"{self.file}:{self.kind}/{self.name}"


@functools.cache
def k8s_docs() -> tuple[K8sDoc, ...]:
    """Every manifest of the kustomize base (kustomization.yaml itself excluded)."""
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for data in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if data is not None:
                docs.append(K8sDoc(path.name, data))
    return tuple(docs)


def k8s_of_kind(kind: str) -> dict[str, K8sDoc]:
    return {doc.name: doc for doc in k8s_docs() if doc.kind == kind}


def kustomization() -> dict[str, Any]:
    data = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def pod_spec(doc: K8sDoc) -> dict[str, Any]:
    return doc.data["spec"]["template"]["spec"]  # type: ignore[no-any-return]


@functools.cache
def workflow() -> dict[str, Any]:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


# --- Dockerfiles -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction (CMD, ENTRYPOINT, RUN), or ``None`` for shell form."""
        try:
            value = json.loads(self.args)
        except json.JSONDecodeError:
            return None
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
        return None


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def dockerfile_stages(name: str) -> list[Stage]:
    """The stages of a Dockerfile: continuation lines joined, comments and parser directives dropped."""
    logical: list[str] = []
    pending = ""
    for raw in (ROOT / name).read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, f"{name}: the last instruction ends with a line continuation"

    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            stage_name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], stage_name))
        else:
            assert stages, f"{name}: {keyword} before the first FROM"
            stages[-1].instructions.append(Instruction(keyword, args))
    return stages


# --- commands ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    where: str
    argv: tuple[str, ...]


def _as_argv(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(shlex.split(value))
    return tuple(str(item) for item in value)


def python_commands() -> list[Command]:
    """Every command that the Dockerfiles, compose and the Kubernetes manifests run in Stockroom's images."""
    found = []
    for name in DOCKERFILES:
        for stage_no, stage in enumerate(dockerfile_stages(name)):
            for instruction in stage.all("CMD") + stage.all("ENTRYPOINT"):
                # A shell-form command is kept as one word, which the tests then reject.
                argv = instruction.exec_form() or [instruction.args]
                found.append(Command(f"{name} stage {stage_no} {instruction.keyword}", tuple(argv)))
    for service_name, service in services().items():
        if "command" in service and "build" in service:
            found.append(Command(f"compose {service_name}", _as_argv(service["command"])))
    for doc in k8s_docs():
        if doc.kind in {"Deployment", "Job"}:
            spec = pod_spec(doc)
            for container in spec.get("initContainers", []) + spec["containers"]:
                if not container["image"].startswith("stockroom/"):
                    continue
                argv = tuple(container.get("command", [])) + tuple(container.get("args", []))
                if argv:
                    found.append(Command(f"k8s {doc.id} {container['name']}", argv))
    return found
