"""Words for numbers in what operators read: "1 tenant", "3 tenants", never "1 tenant(s)"."""

from __future__ import annotations


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``count`` with its noun in the right number: ``counted(1, "job")`` is "1 job",
    ``counted(2, "job")`` "2 jobs", ``counted(2, "company", "companies")`` "2 companies"."""
    return f"{count} {singular if count == 1 else plural or singular + 's'}"
