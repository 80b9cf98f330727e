"""deploy/alerts.yml: valid rules, and every series they use is one /metrics exposes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.utils import timezone

from kgc.console import collector
from tests.kgc.console import prometheus

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (requirements-dev.txt)")

RULES = Path(__file__).resolve().parents[3] / "deploy" / "alerts.yml"
WANTED = {"KgcJobFailuresRising", "KgcQueueBacklog", "KgcNoWorkerHeartbeat"}


def _rules() -> list[dict]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (apt-get install prometheus)")
def test_promtool_accepts_the_rules():
    result = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_cover_failures_backlog_and_heartbeats():
    assert {rule["alert"] for rule in _rules()} >= WANTED


def test_every_rule_has_an_expression_a_severity_and_a_summary():
    for rule in _rules():
        assert rule["expr"] and rule["labels"]["severity"] and rule["annotations"]["summary"], rule["alert"]


def test_backlog_alert_fires_past_15_minutes():
    (backlog,) = [rule for rule in _rules() if rule["alert"] == "KgcQueueBacklog"]
    assert "kgc_queue_oldest_waiting_age_seconds" in backlog["expr"] and "> 900" in backlog["expr"]


@pytest.mark.django_db
def test_every_series_the_rules_use_is_exposed():
    exposed = set(prometheus.parse(collector.metrics_render(now=timezone.now())))
    used = {name for rule in _rules() for name in re.findall(r"\bkgc_[a-z_]+", rule["expr"])}
    assert used and used <= exposed
