"""The notifications app's errors."""

from __future__ import annotations


class NotificationError(Exception):
    """Base of the notifications app's errors."""


class InvalidEmailRequest(NotificationError, ValueError):
    """An email that cannot be queued; ``errors`` maps each bad field to what is wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))


class UnknownMember(NotificationError, LookupError, ValueError):
    """No such user, or not a member of that tenant."""

    def __init__(self, *, tenant_id: int, user_id: int) -> None:
        self.tenant_id = tenant_id
        self.user_id = user_id
        super().__init__(f"user {user_id} is not a member of tenant {tenant_id}")


class InvalidPreferences(NotificationError, ValueError):
    """Preferences that cannot be saved; ``errors`` maps each bad kind to what is wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{kind}: {message}" for kind, message in errors.items()))


class InvalidLinkToken(NotificationError, ValueError):
    """An unsubscribe or preferences link whose token is malformed, forged or altered."""


class UnknownEmail(NotificationError, LookupError, ValueError):
    """No outbound email with that id."""
