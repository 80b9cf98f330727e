"""Bearer tokens for the JSON API.

``KGC_API_TOKENS`` is a list so that a token can be rotated: add the new one, move
the callers over, remove the old one. With no token configured every request is
refused: an open job API is never the default.
"""

from __future__ import annotations

import hmac

from django.conf import settings


def api_tokens() -> list[str]:
    """The configured tokens (settings ``KGC_API_TOKENS``), blanks dropped."""
    return [token.strip() for token in getattr(settings, "KGC_API_TOKENS", []) if token.strip()]


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def token_valid(token: str, tokens: list[str]) -> bool:
    """Whether ``token`` is one of ``tokens``.

    Every configured token is compared, each in constant time, so the answer takes as
    long whichever token matches (or none). The header arrives as latin-1 text (WSGI),
    so it is compared as the bytes that were sent.
    """
    sent = token.encode("latin-1", errors="replace")
    matches = [hmac.compare_digest(sent, known.encode("utf-8")) for known in tokens]
    return any(matches)
