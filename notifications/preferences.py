"""How each person wants notification emails: their choices, the tenant's default, and the
signed links that change them from an email.

The rules are pure functions (``email_preference_effective``, ``email_route``): a reminder
or alert run loads the tenant's choices and suppressed addresses in one query and applies
them to every notification in the run's one statement. In-app notifications are made
whatever a person chose; only whether and when the email goes changes.

The links in an email carry a token signed with ``SECRET_KEY`` (Django's signing, one
salt per kind of link) that names the user, the tenant and what the link is for. Changing
any of it breaks the signature, so a token cannot be forged, nor turned to another user,
tenant or kind. Tokens do not expire: an unsubscribe link must work for as long as the
email is kept; rotating ``SECRET_KEY`` (with ``SECRET_KEY_FALLBACKS``) retires them.

One exception: the page that confirms an unsubscribe links to the preferences page with a
token that expires after ``PREFERENCES_FROM_UNSUBSCRIBE_MAX_AGE``. The unsubscribe link is
also the ``List-Unsubscribe`` address, which mailbox providers read, follow and log: what
it answers must not open every choice of the member for good.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core import signing
from django.db import transaction
from django.utils import timezone

from compliance.models import Tenant
from notifications import selectors
from notifications.exceptions import InvalidLinkToken, InvalidPreferences
from notifications.models import (
    EmailPreference,
    NotificationEmailStatus,
    NotificationKind,
    NotificationPreference,
    NotificationUrgency,
)

KINDS: tuple[str, ...] = tuple(NotificationKind.values)
ALL_KINDS = "all"  # a digest's unsubscribe link: every kind
CHOICES: tuple[str, ...] = tuple(EmailPreference.values)


# --- The rules ------------------------------------------------------------------------------


def email_preference_effective(*, chosen: str | None, tenant_default: str) -> str:
    """What applies to one kind: the person's choice, else the tenant's default."""
    return chosen or tenant_default


def email_route(*, preference: str, urgency: str | None, has_address: bool, suppressed: bool) -> str:
    """The ``email_status`` a new notification starts with: where its email goes.

    ``queued`` is the only one that gets an email of its own now. No address: ``skipped``.
    ``off``: ``opted_out``. An address that bounced or complained: ``suppressed``. A
    digest reader waits for the digest (``digest_pending``), except for an URGENT
    notification, which is emailed at once.
    """
    if not has_address:
        return NotificationEmailStatus.SKIPPED
    if preference == EmailPreference.OFF:
        return NotificationEmailStatus.OPTED_OUT
    if suppressed:
        return NotificationEmailStatus.SUPPRESSED
    if preference == EmailPreference.DAILY_DIGEST and urgency != NotificationUrgency.URGENT:
        return NotificationEmailStatus.DIGEST_PENDING
    return NotificationEmailStatus.QUEUED


def preference_changes_errors(changes: Mapping[str, Any]) -> dict[str, str]:
    """What is wrong with a set of changes, by kind (empty when it is fine). ``None`` clears a choice."""
    errors = {}
    for kind, value in changes.items():
        if kind not in KINDS:
            errors[kind] = f"unknown kind; known: {', '.join(KINDS)}"
        elif value is not None and value not in CHOICES:
            errors[kind] = f"must be one of {', '.join(CHOICES)}, or null for the tenant's default"
    return errors


# --- Signed links ---------------------------------------------------------------------------

_UNSUBSCRIBE_SALT = "notifications.unsubscribe"
_PREFERENCES_SALT = "notifications.preferences"
_PREFERENCES_BRIEF_SALT = "notifications.preferences.brief"
# How long the preferences link on the page confirming an unsubscribe works.
PREFERENCES_FROM_UNSUBSCRIBE_MAX_AGE = timedelta(minutes=15)


@dataclass(frozen=True)
class LinkSubject:
    """Whom a link is for, and (unsubscribe links) which kind it turns off: a kind or ``all``."""

    user_id: int
    tenant_id: int
    kind: str = ""


def unsubscribe_token(*, user_id: int, tenant_id: int, kind: str) -> str:
    if kind not in (*KINDS, ALL_KINDS):
        raise ValueError(f"unknown notification kind {kind!r}")
    return signing.Signer(salt=_UNSUBSCRIBE_SALT).sign_object({"u": user_id, "t": tenant_id, "k": kind})


def preferences_token(*, user_id: int, tenant_id: int) -> str:
    return signing.Signer(salt=_PREFERENCES_SALT).sign_object({"u": user_id, "t": tenant_id})


def preferences_token_brief(*, user_id: int, tenant_id: int) -> str:
    """A preferences token that expires after ``PREFERENCES_FROM_UNSUBSCRIBE_MAX_AGE``."""
    return signing.TimestampSigner(salt=_PREFERENCES_BRIEF_SALT).sign_object({"u": user_id, "t": tenant_id})


def _token_read(token: str, *, salt: str, max_age: timedelta | None = None) -> dict[str, Any]:
    try:
        if max_age is None:
            value = signing.Signer(salt=salt).unsign_object(token)
        else:
            value = signing.TimestampSigner(salt=salt).unsign_object(token, max_age=max_age)
    except signing.SignatureExpired:
        raise InvalidLinkToken(
            "this link has expired: use the link to your email preferences at the bottom of any of our emails"
        ) from None
    except (signing.BadSignature, ValueError, UnicodeError):
        # ValueError: a signature that checks out around a payload that is not JSON (cannot
        # happen without the key, but a bad link must never be a server error).
        raise InvalidLinkToken("this link is not valid: it may have been cut or changed") from None
    if not isinstance(value, dict) or not all(isinstance(value.get(key), int) for key in ("u", "t")):
        raise InvalidLinkToken("this link is not valid")
    return value


def unsubscribe_token_read(token: str) -> LinkSubject:
    """The subject of an unsubscribe token; ``InvalidLinkToken`` (a ValueError) if it is not ours."""
    value = _token_read(token, salt=_UNSUBSCRIBE_SALT)
    if value.get("k") not in (*KINDS, ALL_KINDS):
        raise InvalidLinkToken("this link is not valid")
    return LinkSubject(user_id=value["u"], tenant_id=value["t"], kind=value["k"])


def preferences_token_read(token: str) -> LinkSubject:
    """The subject of a preferences token: an email's (no expiry), or one from the unsubscribe
    page's confirmation (``preferences_token_brief``, expiring); ``InvalidLinkToken`` otherwise."""
    try:
        value = _token_read(token, salt=_PREFERENCES_SALT)
    except InvalidLinkToken:
        value = _token_read(token, salt=_PREFERENCES_BRIEF_SALT, max_age=PREFERENCES_FROM_UNSUBSCRIBE_MAX_AGE)
    return LinkSubject(user_id=value["u"], tenant_id=value["t"])


@dataclass(frozen=True)
class EmailLinks:
    """The links an email to a member carries (footer, List-Unsubscribe header)."""

    preferences_url: str
    unsubscribe_url: str
    unsubscribe_what: str


def email_links(*, public_url: str, user_id: int, tenant_id: int, kind: str) -> EmailLinks | None:
    """The links of an email about ``kind`` (or ``all``, a digest) to a member; ``None``
    without a public URL (there is nowhere to point them)."""
    if not public_url:
        return None
    base = public_url.rstrip("/")
    what = "all notification emails" if kind == ALL_KINDS else f"{NotificationKind(kind).label.lower()} emails"
    return EmailLinks(
        preferences_url=f"{base}/notifications/preferences/{preferences_token(user_id=user_id, tenant_id=tenant_id)}",
        unsubscribe_url=f"{base}/notifications/unsubscribe/"
        f"{unsubscribe_token(user_id=user_id, tenant_id=tenant_id, kind=kind)}",
        unsubscribe_what=what,
    )


# --- Reading and changing a member's choices ----------------------------------------------


@dataclass(frozen=True)
class MemberPreferences:
    """A member's choices by kind (``None``: the tenant's default applies) and what applies."""

    tenant_id: int
    tenant_name: str
    user_id: int
    tenant_default: str
    chosen: dict[str, str | None]

    @property
    def effective(self) -> dict[str, str]:
        return {
            kind: email_preference_effective(chosen=value, tenant_default=self.tenant_default)
            for kind, value in self.chosen.items()
        }


def notification_preferences_get(*, tenant: Tenant, user_id: int) -> MemberPreferences:
    """A member's email choices for every kind. ``UnknownMember`` (404) if the user is not a member."""
    selectors.membership_get(tenant=tenant, user_id=user_id)
    chosen = selectors.preferences_chosen(tenant=tenant, user_id=user_id)
    return MemberPreferences(
        tenant_id=tenant.pk,
        tenant_name=tenant.name,
        user_id=user_id,
        tenant_default=tenant.notification_email_default,
        chosen={kind: chosen.get(kind) for kind in KINDS},
    )


def notification_preferences_set(
    *, tenant: Tenant, user_id: int, changes: Mapping[str, str | None]
) -> MemberPreferences:
    """Change a member's choices for the kinds in ``changes`` (``None``: back to the tenant's
    default); kinds left out keep theirs. All or nothing, in one transaction.

    Raises ``InvalidPreferences`` (a ValueError naming each bad kind) or ``UnknownMember``
    and changes nothing. Changes apply to notifications made from now on; items already
    waiting for a digest go out in it, unless the kind is now off.
    """
    errors = preference_changes_errors(changes)
    if errors:
        raise InvalidPreferences(errors)
    selectors.membership_get(tenant=tenant, user_id=user_id)
    now = timezone.now()
    chosen = [
        NotificationPreference(tenant=tenant, user_id=user_id, kind=kind, email=value, updated_at=now)
        for kind, value in changes.items()
        if value is not None
    ]
    with transaction.atomic():
        NotificationPreference.objects.filter(
            tenant=tenant, user_id=user_id, kind__in=[kind for kind, value in changes.items() if value is None]
        ).delete()
        NotificationPreference.objects.bulk_create(
            chosen,
            update_conflicts=True,
            unique_fields=["tenant", "user", "kind"],
            update_fields=["email", "updated_at"],
        )
    return notification_preferences_get(tenant=tenant, user_id=user_id)


def _link_tenant(subject: LinkSubject) -> Tenant:
    tenant = Tenant.objects.filter(pk=subject.tenant_id).first()
    if tenant is None:
        raise InvalidLinkToken("this link is no longer valid: the firm is gone")
    return tenant


def unsubscribe_apply(*, subject: LinkSubject) -> MemberPreferences:
    """Turn the link's kind (or every kind) off for its member: the one-click unsubscribe.

    Safe to repeat. ``UnknownMember`` if the person is no longer a member of the tenant.
    """
    kinds = KINDS if subject.kind == ALL_KINDS else (subject.kind,)
    return notification_preferences_set(
        tenant=_link_tenant(subject), user_id=subject.user_id, changes=dict.fromkeys(kinds, EmailPreference.OFF)
    )


def link_preferences_get(*, subject: LinkSubject) -> MemberPreferences:
    """The choices a link's member sees on the preferences page."""
    return notification_preferences_get(tenant=_link_tenant(subject), user_id=subject.user_id)


def link_preferences_set(*, subject: LinkSubject, changes: Mapping[str, str | None]) -> MemberPreferences:
    """The preferences page's save: ``notification_preferences_set`` for the link's member."""
    return notification_preferences_set(tenant=_link_tenant(subject), user_id=subject.user_id, changes=changes)
