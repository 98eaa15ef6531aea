"""The GitHub Actions workflow: actions pinned by commit, no persisted token, timeouts, local make targets."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from ._files import DOCKERFILES, MAKEFILE, ROOT, WORKFLOW, pinned_tag, workflow

PINNED_USES = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
MAKE_CALL = re.compile(r"\bmake\s+([a-zA-Z_-]+)")
MAKE_TARGET = re.compile(r"^([a-zA-Z_-]+):", re.MULTILINE)

JOBS: dict[str, dict[str, Any]] = workflow()["jobs"]


def steps() -> Iterator[tuple[str, dict[str, Any]]]:
    for job_name, job in JOBS.items():
        for step in job["steps"]:
            yield job_name, step


def test_workflow_runs_on_pushes_and_pull_requests_with_ci_set() -> None:
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1).
    triggers = workflow().get("on", workflow().get(True))

    assert {"push", "pull_request"} <= set(triggers)
    assert str(workflow()["env"]["CI"]).lower() == "true"
    assert workflow()["permissions"] == {"contents": "read"}


def test_every_action_is_pinned_by_a_full_commit_sha_with_its_version() -> None:
    uses_lines = [line.strip() for line in WORKFLOW.read_text(encoding="utf-8").splitlines() if "uses:" in line]

    assert uses_lines
    for _, step in steps():
        if "uses" in step:
            assert PINNED_USES.match(step["uses"]), f"{step['uses']}: pin a 40-hex commit"
    for line in uses_lines:
        assert re.search(r"@[0-9a-f]{40} # v\d+", line), f"{line}: say which release the SHA is"


def test_checkout_does_not_persist_the_token() -> None:
    checkouts = [step for _, step in steps() if step.get("uses", "").startswith("actions/checkout@")]

    assert len(checkouts) == len(JOBS), "every job checks out"
    for step in checkouts:
        assert step["with"]["persist-credentials"] is False


@pytest.mark.parametrize("job", sorted(JOBS))
def test_every_job_has_a_timeout(job: str) -> None:
    assert 0 < JOBS[job]["timeout-minutes"] <= 60


def test_make_calls_name_targets_of_the_makefile() -> None:
    targets = set(MAKE_TARGET.findall(MAKEFILE.read_text(encoding="utf-8")))
    calls = {target for _, step in steps() for target in MAKE_CALL.findall(step.get("run", ""))}

    assert {"lint", "test"} <= calls
    assert calls <= targets, f"not in the Makefile: {calls - targets}"


def test_dependency_install_is_cached_on_the_lock() -> None:
    for job in ("lint", "test"):
        (setup_uv,) = [s for s in JOBS[job]["steps"] if s.get("uses", "").startswith("astral-sh/setup-uv@")]
        assert setup_uv["with"]["enable-cache"] is True
        assert setup_uv["with"]["cache-dependency-glob"] == "uv.lock"


def test_tests_get_real_health_checked_services() -> None:
    services = JOBS["test"]["services"]

    assert set(services) == {"postgres", "redis", "rabbitmq"}
    for name, service in services.items():
        assert pinned_tag(service["image"]), f"{name}: {service['image']}"
        assert "--health-cmd" in service["options"]


def test_both_images_are_built_without_pushing() -> None:
    builds = [step for _, step in steps() if step.get("uses", "").startswith("docker/build-push-action@")]
    matrix = JOBS["images"]["strategy"]["matrix"]["image"]

    (build,) = builds
    assert build["with"]["push"] is False
    files = {build["with"]["file"].replace("${{ matrix.image }}", image) for image in matrix}
    assert files == set(DOCKERFILES)
    assert all((ROOT / name).is_file() for name in files)
