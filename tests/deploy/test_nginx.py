"""deploy/nginx/nginx.conf: proxies the API, serves /media/, and nginx itself accepts it (`nginx -t`)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path

from ._files import NGINX_CONF, services

TEXT = NGINX_CONF.read_text(encoding="utf-8")


def block(header: str) -> str:
    """The body of the first ``header { ... }`` block (no nested braces inside it)."""
    match = re.search(re.escape(header) + r"\s*\{([^{}]*)\}", TEXT)
    assert match, f"no `{header}` block"
    return match[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_proxies_everything_else_to_the_api_service() -> None:
    api_command = services()["api"]["command"]
    api_port = api_command[api_command.index("--port") + 1]

    assert re.search(rf"server api:{api_port};", block("upstream api"))
    assert "proxy_pass http://api;" in block("location /")
    assert 'proxy_set_header Connection "";' in block("location /"), "keepalive to the upstream"


def test_serves_media_from_the_volume_with_long_lived_caching() -> None:
    media = block("location /media/")

    assert re.search(r"alias /srv/media/;", media)
    assert "immutable" in media
    assert "proxy_pass" not in media


def test_lets_the_api_answer_too_large_bodies_itself() -> None:
    size = re.search(r"client_max_body_size (\d+)m;", TEXT)

    assert size
    assert int(size[1]) > 20, "above the API's 20 MiB image limit"


def test_compose_healthcheck_hits_the_health_location() -> None:
    test = services()["nginx"]["healthcheck"]["test"]

    assert "location = /nginx-health" in TEXT
    assert any(arg.endswith("/nginx-health") for arg in test)


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    assert nginx, "nginx is not installed: apt-get install -y --no-install-recommends nginx"
    # Only what needs the compose network changes: the upstream host, and a port any user may bind.
    config = TEXT.replace("server api:8000;", "server 127.0.0.1:8000;").replace(
        "listen 80;", f"listen 127.0.0.1:{free_port()};"
    )
    (tmp_path / "nginx.conf").write_text(config, encoding="utf-8")

    pid = f"pid {tmp_path / 'nginx.pid'};"
    result = subprocess.run(
        [nginx, "-t", "-q", "-p", str(tmp_path), "-e", "stderr", "-g", pid, "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 0, result.stderr
