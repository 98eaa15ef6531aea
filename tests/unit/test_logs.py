"""Log lines: every value a line may carry renders, and secrets never appear (in a process of its own each, as
logging is configured once per process)."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import logging
from shared.logs import REQUEST_ID, configure_logging, get_logger
from shared.settings import Settings
configure_logging(Settings(_env_file=None, log_format="json"), "test")
REQUEST_ID.set("rid-1")
log = get_logger("t")
log.info("big", n=2**70, by_int={1: "one"}, url="amqp://guest:s3cret@host/")
log.info("decimal", value=__import__("decimal").Decimal("1.50"))
logging.getLogger("aiohttp.server").warning("from %s", "a library")
try:
    raise ValueError("postgresql://u:pw-in-traceback@db/x")
except ValueError:
    log.exception("failed", authorization="Bearer abc")
"""


def test_every_value_renders_as_one_json_line_with_the_request_id_and_no_secret() -> None:
    # When a process logs values orjson alone refuses (an integer past 64 bits, a key that is no string), a
    # Decimal, a library's line and an exception quoting a URL with its password
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=60)
    lines = [json.loads(line) for line in out.stderr.splitlines()]
    # Then each is one JSON object with the request id and the process, in order
    assert [x["event"] for x in lines] == ["big", "decimal", "from a library", "failed"]
    assert all(x["request_id"] == "rid-1" and x["process"] == "test" for x in lines)
    assert lines[0]["n"] == 2**70
    assert lines[0]["by_int"] == {"1": "one"}
    assert lines[1]["value"] == "Decimal('1.50')"
    # And no password or key reached any line
    assert "s3cret" not in out.stderr
    assert "pw-in-traceback" not in out.stderr
    assert "abc" not in out.stderr
    assert lines[3]["authorization"] == "***"
    assert "ValueError" in lines[3]["exception"]
