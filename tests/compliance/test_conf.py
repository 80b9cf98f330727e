"""The scoring settings: defaults, overrides and refusals."""

from __future__ import annotations

import pytest

from compliance.conf import DEFAULT_POLICY, ScoringConfigError, scoring_policy, scoring_policy_check


def test_defaults_are_the_documented_policy():
    assert scoring_policy({}) == DEFAULT_POLICY
    assert (DEFAULT_POLICY.missing_points, DEFAULT_POLICY.expiring_days, DEFAULT_POLICY.green_from) == (20, 30, 80)


def test_settings_override_the_defaults(settings):
    settings.COMPLIANCE_SCORING = {"overdue_points": 25, "upcoming_days": 10}
    policy = scoring_policy()
    assert (policy.overdue_points, policy.upcoming_days, policy.missing_points) == (25, 10, 20)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"missing_penalty": 5}, "unknown keys missing_penalty"),
        ({"expired_points": -1}, "expired_points"),
        ({"expiring_days": "30"}, "expiring_days"),
        ({"amber_from": 80}, "amber_from < green_from"),
        ({"green_from": 101}, "green_from ≤ 100"),
        ({"amber_from": 0}, "0 < amber_from"),
    ],
)
def test_bad_overrides_are_refused(overrides, message):
    with pytest.raises(ScoringConfigError, match=message):
        scoring_policy(overrides)


def test_system_check_reports_a_bad_configuration(settings):
    settings.COMPLIANCE_SCORING = {"green_from": 40}
    assert [error.id for error in scoring_policy_check()] == ["compliance.E001"]


def test_system_check_accepts_the_defaults(settings):
    settings.COMPLIANCE_SCORING = {}
    assert scoring_policy_check() == []
