"""deploy/prometheus (alert rules) and deploy/grafana (dashboard): promtool accepts the rules, its unit tests of
them pass, and every query of the dashboard is valid PromQL. That the metrics they name exist is checked against
live processes in tests/integration/test_monitoring.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from ._files import ROOT

RULES = ROOT / "deploy" / "prometheus" / "stockroom-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "stockroom-alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "stockroom.json"
#: What the issue asks the dashboard and the rules to watch, by a metric that shows it.
WATCHED = {
    "outbox backlog": "stockroom_outbox_backlog",
    "outbox age": "stockroom_outbox_oldest_unsent_age_seconds",
    "projection lag": 'stockroom_queue_messages{queue="cache-warming"}',
    "queue depth": "stockroom_queue_messages",
    "dead letters": "stockroom_queue_dead_letters",
    "5xx rate": 'status=~"5.."',
    "latency": "stockroom_http_request_duration_seconds_bucket",
    "rate-limit fail-open": "stockroom_rate_limit_fail_open_total",
    "a worker with no consumer": "stockroom_queue_consumers",
}


def promtool() -> str:
    """Debian's promtool (package ``prometheus``; scripts/services.sh installs it). Missing is a failure, never a
    skip, in CI (CI=true) and anywhere else."""
    found = shutil.which("promtool") or shutil.which("promtool", path="/usr/bin:/usr/local/bin")
    hint = "promtool is not installed: apt-get install -y --no-install-recommends prometheus (scripts/services.sh)"
    assert found, hint + (" [CI=true]" if os.environ.get("CI") == "true" else "")
    return found


def dashboard_exprs() -> list[str]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def rule_exprs() -> list[str]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def metric_names(exprs: list[str]) -> set[str]:
    """The metric names a set of PromQL expressions reads (every one here starts with stockroom_ or dramatiq_)."""
    return {m for e in exprs for m in re.findall(r"\b((?:stockroom|dramatiq)_[a-z0-9_]+)\b", e)}


def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_alerts_fire_on_the_series_their_unit_tests_give() -> None:
    done = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_severity_summary_and_description() -> None:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for rule in (r for g in doc["groups"] for r in g["rules"]):
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # Given each query of the dashboard as a recording rule (Grafana's $__rate_interval as a fixed range)
    exprs = [e.replace("$__rate_interval", "5m") for e in dashboard_exprs()]
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:q{i}", "expr": e}
                                                         for i, e in enumerate(exprs)]}]}  # fmt: skip
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    # Then promtool parses every one
    done = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dashboard_is_grafana_json_with_unique_panel_ids_and_one_datasource_variable() -> None:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    assert [v["name"] for v in doc["templating"]["list"] if v["type"] == "datasource"] == ["datasource"]
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_dashboard_and_rules_cover_what_operators_watch() -> None:
    dashboard, rules = "\n".join(dashboard_exprs()), "\n".join(rule_exprs())
    for what, needle in WATCHED.items():
        assert needle in dashboard, f"the dashboard does not show {what}"
        assert needle in rules, f"no alert on {what}"
