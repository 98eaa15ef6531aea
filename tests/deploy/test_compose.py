"""docker-compose.yml: health-checked start order, pinned images, scalable workers, secrets from .env."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from ._files import COMPOSE, ENV_EXAMPLE, NGINX_CONF, ROOT, compose, env_example, pinned_tag, services

EXPECTED_SERVICES = {
    "postgres",
    "redis",
    "rabbitmq",
    "migrate",
    "api",
    "relay",
    "worker-cache",
    "worker-thumbnails",
    "nginx",
}
APP_SERVICES = {"migrate", "api", "relay", "worker-cache", "worker-thumbnails"}
WORKERS = {"relay", "worker-cache", "worker-thumbnails"}
#: Settings every application process reads (CONTRACT.md), plus the secrets compose itself needs.
ENV_KEYS = {
    "DATABASE_URL",
    "REDIS_URL",
    "RABBITMQ_URL",
    "MEDIA_ROOT",
    "MEDIA_URL",
    "API_HOST",
    "API_PORT",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "AUTH_DISABLED",
    "BOOTSTRAP_API_KEY",
    "CURSOR_SECRET",
    "POSTGRES_PASSWORD",
    "RABBITMQ_DEFAULT_USER",
    "RABBITMQ_DEFAULT_PASS",
}
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")


def one_shot_services() -> set[str]:
    return {name for name, service in services().items() if service.get("restart") == "no"}


def depends_on(service: dict[str, Any]) -> dict[str, Any]:
    value = service.get("depends_on", {})
    assert isinstance(value, dict), "depends_on in its long form, with a condition"
    return value


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` against ``env``; fails where compose would."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        value = env.get(name, "")
        if op in {":?", "?"}:
            assert value, f"${{{name}}} is required ({arg}) and .env.example leaves it empty"
        if op in {":-", "-"} and not value:
            return str(arg)
        assert op is not None or name in env, f"${{{name}}} has no default and is not in .env.example"
        return value

    return VARIABLE.sub(substitute, text.replace("$$", "\0")).replace("\0", "$")


def interpolated(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, str):
        return interpolate(value, env)
    if isinstance(value, list):
        return [interpolated(item, env) for item in value]
    if isinstance(value, dict):
        return {key: interpolated(item, env) for key, item in value.items()}
    return value


def test_compose_defines_the_whole_stack() -> None:
    assert set(services()) == EXPECTED_SERVICES


@pytest.mark.parametrize("name", sorted(EXPECTED_SERVICES))
def test_every_long_running_service_has_a_healthcheck(name: str) -> None:
    service = services()[name]

    if name in one_shot_services():
        return  # it exits; others wait for it with service_completed_successfully (tested below)
    healthcheck = service.get("healthcheck")
    assert healthcheck, f"{name} has no healthcheck"
    assert not healthcheck.get("disable")
    assert healthcheck["test"][0] in {"CMD", "CMD-SHELL"}


def test_migrate_is_a_one_shot_that_others_await_by_completion() -> None:
    assert one_shot_services() == {"migrate"}
    waiting = {
        name
        for name, service in services().items()
        if depends_on(service).get("migrate", {}).get("condition") == "service_completed_successfully"
    }
    assert waiting == {"api", "relay", "worker-cache", "worker-thumbnails"}


@pytest.mark.parametrize("name", sorted(EXPECTED_SERVICES))
def test_depends_on_uses_health_or_completion_conditions(name: str) -> None:
    for dependency, spec in depends_on(services()[name]).items():
        assert dependency in services()
        if dependency in one_shot_services():
            assert spec["condition"] == "service_completed_successfully"
        else:
            assert spec["condition"] == "service_healthy"
            assert services()[dependency].get("healthcheck"), f"{dependency} is awaited but has no healthcheck"


def test_start_order_needs_no_sleep() -> None:
    text = COMPOSE.read_text(encoding="utf-8")

    assert not re.search(r"\bsleep\b|wait-for|dockerize", text)


@pytest.mark.parametrize("name", sorted(EXPECTED_SERVICES))
def test_images_are_pinned_and_never_latest(name: str) -> None:
    service = services()[name]

    image = service.get("image")
    assert image, f"{name}: name the image (built ones too), so `latest` is never implied"
    if "build" in service:
        assert not image.endswith(":latest")
        assert ":" in image
    else:
        assert pinned_tag(image), f"{name}: {image} is not pinned to a version"


@pytest.mark.parametrize("name", sorted(EXPECTED_SERVICES))
def test_no_container_names_so_every_service_can_scale(name: str) -> None:
    assert "container_name" not in services()[name]


def test_only_nginx_and_the_management_ui_are_published() -> None:
    published = {name: service["ports"] for name, service in services().items() if service.get("ports")}

    assert set(published) == {"nginx", "rabbitmq"}
    assert [str(port).rsplit(":", 1)[-1] for port in published["rabbitmq"]] == ["15672"]
    assert [str(port).rsplit(":", 1)[-1] for port in published["nginx"]] == ["80"]
    for name in WORKERS:
        assert "ports" not in services()[name]
        assert "expose" not in services()[name]


def test_dramatiq_workers_set_processes_and_threads() -> None:
    for name in ("worker-cache", "worker-thumbnails"):
        command = services()[name]["command"]
        assert "--processes" in command
        assert "--threads" in command


def test_workers_get_longer_to_stop_than_a_message_may_run() -> None:
    for name in ("worker-cache", "worker-thumbnails"):
        grace = services()[name]["stop_grace_period"]
        assert grace.endswith("s")
        assert int(grace[:-1]) > 600


def test_named_volumes_hold_postgres_data_and_media() -> None:
    volumes = set(services()["postgres"]["volumes"])

    assert "pgdata:/var/lib/postgresql/data" in volumes
    named = set(compose()["volumes"])
    assert {"pgdata", "media"} <= named
    assert "media:/data/media" in services()["api"]["volumes"]
    assert "media:/data/media" in services()["worker-thumbnails"]["volumes"]


def test_nginx_serves_the_media_volume_read_only_where_its_config_looks() -> None:
    mounts = services()["nginx"]["volumes"]
    media_mount = next(m for m in mounts if m.startswith("media:"))
    _, target, mode = media_mount.split(":")
    alias = re.search(r"location /media/ \{[^}]*alias ([^;]+);", NGINX_CONF.read_text(encoding="utf-8"))

    assert mode == "ro"
    assert alias is not None
    assert alias[1].rstrip("/") == target.rstrip("/")
    assert "./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in mounts


def test_application_services_read_secrets_from_the_env_file() -> None:
    for name in APP_SERVICES:
        env_file = services()[name]["env_file"]
        assert env_file == ".env" or env_file == [".env"], name


def test_no_secret_is_written_into_the_compose_file() -> None:
    for name, service in services().items():
        environment = service.get("environment", {})
        assert isinstance(environment, dict), f"{name}: environment as a mapping"
        for key, value in environment.items():
            if any(word in key for word in ("PASSWORD", "PASS", "SECRET", "KEY")):
                assert VARIABLE.fullmatch(str(value)), f"{name}.{key} must come from .env"
        for key in ("DATABASE_URL", "RABBITMQ_URL"):
            if key in environment:
                # Each ${...} stands for one opaque value: the password must be exactly one of them.
                masked = VARIABLE.sub("${}", str(environment[key]))
                assert urlsplit(masked).password == "${}", f"{name}.{key}: the password comes from .env"


def test_env_example_names_every_setting() -> None:
    assert set(env_example()) >= ENV_KEYS


def test_every_variable_resolves_from_the_env_example() -> None:
    env = env_example()

    resolved = interpolated(services(), env)

    assert not VARIABLE.search(str(resolved))


def test_every_api_container_gets_one_cursor_secret_from_env() -> None:
    # Replicas of the API must sign cursors alike; compose stops when .env lacks the secret.
    raw = services()["api"]["environment"]["CURSOR_SECRET"]
    resolved = interpolated(services(), env_example())["api"]["environment"]["CURSOR_SECRET"]

    assert raw.startswith("${CURSOR_SECRET:?")
    assert resolved == env_example()["CURSOR_SECRET"]
    assert len(resolved) >= 16


def test_application_urls_point_at_compose_services() -> None:
    resolved = interpolated(services(), env_example())

    for name in APP_SERVICES:
        environment = resolved[name]["environment"]
        for key, scheme, host in (
            ("DATABASE_URL", "postgresql", "postgres"),
            ("REDIS_URL", "redis", "redis"),
            ("RABBITMQ_URL", "amqp", "rabbitmq"),
        ):
            url = urlsplit(environment[key])
            assert (url.scheme, url.hostname) == (scheme, host), f"{name}.{key}"
        assert environment["MEDIA_ROOT"] == "/data/media"


def test_rabbitmq_has_a_real_administrator_for_the_management_ui() -> None:
    service = services()["rabbitmq"]

    assert "management" in service["image"]
    assert set(service["environment"]) >= {"RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"}
    assert env_example()["RABBITMQ_DEFAULT_USER"] != "guest"


def test_env_example_is_only_an_example() -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")

    for key in ("POSTGRES_PASSWORD", "RABBITMQ_DEFAULT_PASS", "BOOTSTRAP_API_KEY", "CURSOR_SECRET"):
        assert "change-me" in env_example()[key], f"{key} in .env.example is a placeholder"
    assert "AUTH_DISABLED=false" in text


#: The compose-spec keys this file uses; anything else is most likely a typo that compose would reject.
SERVICE_KEYS = {
    "build",
    "cap_drop",
    "command",
    "depends_on",
    "env_file",
    "environment",
    "healthcheck",
    "hostname",
    "image",
    "ports",
    "read_only",
    "restart",
    "security_opt",
    "stop_grace_period",
    "tmpfs",
    "volumes",
}
HEALTHCHECK_KEYS = {"test", "interval", "timeout", "retries", "start_period", "disable"}


def test_only_known_keys_are_used() -> None:
    assert {key for key in compose() if not key.startswith("x-")} <= {"name", "services", "volumes"}
    for name, service in services().items():
        assert set(service) <= SERVICE_KEYS, f"{name}: {set(service) - SERVICE_KEYS}"
        assert set(service.get("healthcheck", {})) <= HEALTHCHECK_KEYS, name
        assert service["restart"] in {"no", "unless-stopped", "always", "on-failure"}


def test_the_real_env_file_is_ignored_by_git() -> None:
    assert ".env" in (ROOT / ".gitignore").read_text(encoding="utf-8").split()


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_metrics_ports_of_the_workers_listen_on_the_compose_network(name: str) -> None:
    # Loopback is the processes' default; in compose, Prometheus on the network scrapes them (no host port).
    environment = services()[name]["environment"]
    assert environment["WORKER_METRICS_HOST"] == "0.0.0.0"
    assert "ports" not in services()[name]
