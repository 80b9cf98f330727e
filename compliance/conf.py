"""The compliance scoring policy's settings: weights and windows, with documented defaults.

A firm tunes them with ``COMPLIANCE_SCORING`` in the settings, a dict that overrides
any of the keys below (``kgc/settings.py`` fills it from ``COMPLIANCE_*`` environment
variables). Unknown keys, negative weights and thresholds that cannot work are
refused: by ``scoring_policy()`` with a ``ConfigError`` and by the system check
``compliance.E001`` at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured


class ScoringConfigError(ImproperlyConfigured, ValueError):
    """``COMPLIANCE_SCORING`` names an unknown key or a value that cannot work."""


@dataclass(frozen=True)
class ScoringPolicy:
    """Weights (points taken off a start of 100) and windows (days), and the level thresholds."""

    missing_points: int = 20  # a required document type with no document at all
    expired_points: int = 20  # the latest document of a required type expired before the day
    expiring_points: int = 5  # ... expires within ``expiring_days`` (inclusive)
    expiring_days: int = 30
    overdue_points: int = 20  # an open filing (draft, prepared, rejected) due before the day
    upcoming_points: int = 5  # a draft filing due within ``upcoming_days`` (inclusive)
    upcoming_days: int = 7
    green_from: int = 80  # green at this score and above
    amber_from: int = 50  # amber from here to green_from - 1; red below

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100_000:
                raise ScoringConfigError(f"COMPLIANCE_SCORING[{item.name!r}] must be a whole number ≥ 0, got {value!r}")
        if not 0 < self.amber_from < self.green_from <= 100:
            raise ScoringConfigError(
                "COMPLIANCE_SCORING thresholds must satisfy 0 < amber_from < green_from ≤ 100, "
                f"got amber_from={self.amber_from}, green_from={self.green_from}"
            )


DEFAULT_POLICY = ScoringPolicy()


def scoring_policy(overrides: dict[str, Any] | None = None) -> ScoringPolicy:
    """The policy in force: the defaults above, overridden by ``settings.COMPLIANCE_SCORING``."""
    if overrides is None:
        overrides = getattr(settings, "COMPLIANCE_SCORING", None) or {}
    if not isinstance(overrides, dict):
        raise ScoringConfigError(f"COMPLIANCE_SCORING must be a dict, got {type(overrides).__name__}")
    known = {item.name for item in fields(ScoringPolicy)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ScoringConfigError(
            f"COMPLIANCE_SCORING has unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return ScoringPolicy(**overrides)


@checks.register(checks.Tags.compatibility)
def scoring_policy_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Refuse at start-up a scoring configuration that ``scoring_policy()`` would refuse at run time."""
    try:
        scoring_policy()
    except ScoringConfigError as exc:
        return [checks.Error(str(exc), id="compliance.E001")]
    return []
