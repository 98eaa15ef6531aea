"""Every `python -m X ...` that an image, compose or Kubernetes runs names a module of this repo.

Checked by file, not by import: the deployment files must not name a module or subcommand that does not exist.
"""

from __future__ import annotations

import pytest

from ._files import MODULES, ROOT, WORKER_COMMANDS, Command, python_commands

COMMANDS = python_commands()


def test_commands_were_found_everywhere() -> None:
    places = {command.where.split()[0] for command in COMMANDS}

    assert {"Dockerfile.api", "Dockerfile.worker", "compose", "k8s"} <= places
    assert {command.argv[2:4] for command in COMMANDS if len(command.argv) >= 4} >= {
        ("worker", name) for name in WORKER_COMMANDS
    }
    assert {command.argv[2] for command in COMMANDS if len(command.argv) >= 3} == MODULES


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_command_runs_a_module_of_the_repo(command: Command) -> None:
    argv = command.argv

    assert argv[:2] == ("python", "-m"), f"{command.where}: {argv}"
    module = argv[2]
    assert module in MODULES
    assert (ROOT / module / "__main__.py").is_file(), f"{command.where}: {module}/__main__.py does not exist"


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.argv[2:3] == ("worker",)], ids=lambda c: c.where)
def test_worker_command_names_a_known_subcommand(command: Command) -> None:
    subcommand = command.argv[3]

    assert subcommand in WORKER_COMMANDS
    if subcommand != "relay":
        # dramatiq's default is the host's CPU count, not the container's share.
        assert "--processes" in command.argv
        assert "--threads" in command.argv
