"""Dockerfile.api and Dockerfile.worker: multi-stage, pinned, unprivileged, health-checked, exec form."""

from __future__ import annotations

import json
import re

import pytest

from ._files import DOCKERFILES, DOCKERIGNORE, ROOT, Stage, dockerfile_stages, pinned_tag

#: Packages that compile things: they belong in a build stage, never in the image that runs.
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|clang|make|build-essential|python3?-dev|libc6-dev|cargo|rustc)\b")

each_dockerfile = pytest.mark.parametrize("dockerfile", DOCKERFILES)


def final_stage(dockerfile: str) -> Stage:
    return dockerfile_stages(dockerfile)[-1]


def healthcheck_argv(stage: Stage) -> list[str]:
    (healthcheck,) = stage.all("HEALTHCHECK")
    options, _, command = healthcheck.args.partition("CMD ")
    assert all(word.startswith("--") for word in options.split()), healthcheck.args
    argv = json.loads(command)
    assert isinstance(argv, list)
    return argv


@each_dockerfile
def test_is_multi_stage(dockerfile: str) -> None:
    stages = dockerfile_stages(dockerfile)

    assert len(stages) >= 2
    assert all(stage.name for stage in stages), "every stage is named, so COPY --from names it"


@each_dockerfile
def test_base_images_are_pinned_to_a_full_version(dockerfile: str) -> None:
    stages = dockerfile_stages(dockerfile)
    earlier: set[str] = set()

    for stage in stages:
        if stage.image in earlier:
            continue
        tag = pinned_tag(stage.image)
        assert tag is not None, f"{stage.image}: pin major.minor.patch, never latest"
        assert re.match(r"\d+\.\d+\.\d+", tag), f"{stage.image}: pin the patch version too"
        earlier.add(stage.name or "")


@each_dockerfile
def test_copy_from_names_only_earlier_stages(dockerfile: str) -> None:
    stages = dockerfile_stages(dockerfile)

    for index, stage in enumerate(stages):
        before = {s.name for s in stages[:index]}
        for copy in stage.all("COPY"):
            for source in re.findall(r"--from=(\S+)", copy.args):
                assert source in before, f"COPY --from={source}: not an earlier stage (no outside images)"


@each_dockerfile
def test_build_stage_installs_exactly_the_lock_with_a_pinned_uv(dockerfile: str) -> None:
    build = dockerfile_stages(dockerfile)[0]
    runs = " ; ".join(run.args for run in build.all("RUN"))

    assert re.search(r"pip install (--no-cache-dir )?uv==\d+\.\d+\.\d+\b", runs)
    assert re.search(r"uv sync\b(?=.*--frozen)(?=.*--no-dev)(?=.*--no-install-project)", runs)
    copied = " ".join(copy.args for copy in build.all("COPY"))
    assert "uv.lock" in copied
    assert "pyproject.toml" in copied


@each_dockerfile
def test_final_stage_runs_as_a_user_that_is_not_root(dockerfile: str) -> None:
    users = final_stage(dockerfile).all("USER")

    assert users, "the final stage sets USER"
    user = users[-1].args.split(":")[0]
    assert user not in {"root", "0"}
    assert user.isdigit(), "a numeric uid lets Kubernetes' runAsNonRoot verify it"


@each_dockerfile
def test_final_stage_has_no_build_tools_or_package_caches(dockerfile: str) -> None:
    stage = final_stage(dockerfile)

    for run in stage.all("RUN"):
        assert not BUILD_TOOLS.search(run.args), run.args
        assert "pip install" not in run.args, "dependencies come from the build stage's venv"
        assert "apt-get install" not in run.args or "rm -rf /var/lib/apt/lists" in run.args
    assert not any("uv" in copy.args.split() for copy in stage.all("COPY"))


@each_dockerfile
def test_final_stage_copies_the_venv_from_the_build_stage(dockerfile: str) -> None:
    stages = dockerfile_stages(dockerfile)

    copies = [c.args for c in stages[-1].all("COPY") if f"--from={stages[0].name}" in c.args]
    assert any("/opt/venv" in args for args in copies)
    assert any("/opt/venv/bin" in env.args for env in stages[-1].all("ENV")), "the venv is on PATH"


@each_dockerfile
def test_copied_sources_exist(dockerfile: str) -> None:
    for stage in dockerfile_stages(dockerfile):
        for copy in stage.all("COPY"):
            if "--from=" in copy.args:
                continue
            *sources, _destination = [word for word in copy.args.split() if not word.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such file in the repo"


@each_dockerfile
def test_cmd_and_entrypoint_use_exec_form(dockerfile: str) -> None:
    stage = final_stage(dockerfile)
    commands = stage.all("CMD") + stage.all("ENTRYPOINT")

    assert commands
    for instruction in commands:
        assert instruction.exec_form(), f"{instruction.keyword} {instruction.args}: use a JSON array"


@each_dockerfile
def test_healthcheck_is_exec_form_and_its_python_compiles(dockerfile: str) -> None:
    argv = healthcheck_argv(final_stage(dockerfile))

    assert argv[:2] == ["python", "-c"]
    compile(argv[2], f"{dockerfile} HEALTHCHECK", "exec")


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = set(DOCKERIGNORE.read_text(encoding="utf-8").split())

    assert {".env", ".venv", ".git", "var"} <= ignored
    assert any("__pycache__" in pattern for pattern in ignored)
