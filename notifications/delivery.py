"""Email delivery (being built)."""

from __future__ import annotations


def email_send(*, outbound_email_id: int) -> str:
    raise NotImplementedError
