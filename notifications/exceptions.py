"""The notifications app's errors."""

from __future__ import annotations


class NotificationError(Exception):
    """Base of the notifications app's errors."""


class InvalidEmailRequest(NotificationError, ValueError):
    """An email that cannot be queued; ``errors`` maps each bad field to what is wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
