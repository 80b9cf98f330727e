"""The pages an email's links open, without logging in: one-click unsubscribe and the preferences page.

Each is reached through a signed token (``notifications.preferences``) that names the
person, the tenant and, for unsubscribing, the kind. A bad or altered token, or one for
someone who is no longer a member, answers 400 and changes nothing. Tokens travel in
the URL, so these pages send their address to no other site (a same-origin referrer
policy: "no-referrer" would make browsers send "Origin: null" and fail the preferences
form's CSRF check) and are neither cached nor indexed.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from notifications import preferences
from notifications.exceptions import InvalidLinkToken, InvalidPreferences, UnknownMember
from notifications.models import EmailPreference, NotificationKind

DEFAULT = "default"


def _private(response: HttpResponse) -> HttpResponse:
    response["Referrer-Policy"] = "same-origin"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _page(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    return _private(render(request, f"notifications/pages/{template}", context, status=status))


def _bad_link(request: HttpRequest, reason: str) -> HttpResponse:
    return _page(request, "bad_link.html", {"reason": reason}, status=400)


def _kind_label(kind: str) -> str:
    return "all notification emails" if kind == preferences.ALL_KINDS else f"{NotificationKind(kind).label} emails"


@method_decorator(never_cache, name="dispatch")
# RFC 8058: the mail client POSTs "List-Unsubscribe=One-Click" with no cookie and no CSRF
# token; the signed token is what authorises the change, so this view alone is exempt.
@method_decorator(csrf_exempt, name="dispatch")
class UnsubscribeView(View):
    """GET asks (link scanners and previews follow links, and must change nothing); POST turns the kind off."""

    http_method_names = ["get", "post"]

    def _subject(self, token: str) -> tuple[preferences.LinkSubject, preferences.MemberPreferences]:
        subject = preferences.unsubscribe_token_read(token)
        return subject, preferences.link_preferences_get(subject=subject)

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        try:
            subject, member = self._subject(token)
        except (InvalidLinkToken, UnknownMember) as exc:
            return _bad_link(request, str(exc))
        context = {"tenant_name": member.tenant_name, "what": _kind_label(subject.kind)}
        return _page(request, "unsubscribe.html", context)

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        try:
            subject, member = self._subject(token)
            preferences.unsubscribe_apply(subject=subject)
        except (InvalidLinkToken, UnknownMember) as exc:
            return _bad_link(request, str(exc))
        context = {
            "tenant_name": member.tenant_name,
            "what": _kind_label(subject.kind),
            # Expires in minutes: this answer goes to whoever POSTs the List-Unsubscribe address,
            # mailbox providers included.
            "preferences_path": reverse(
                "notifications:preferences", args=[preferences.preferences_token_brief(**_ids(subject))]
            ),
            "preferences_minutes": int(preferences.PREFERENCES_FROM_UNSUBSCRIBE_MAX_AGE.total_seconds() // 60),
        }
        return _page(request, "unsubscribed.html", context)


def _ids(subject: preferences.LinkSubject) -> dict[str, int]:
    return {"user_id": subject.user_id, "tenant_id": subject.tenant_id}


class PreferencesForm(forms.Form):
    """One choice per kind: the firm's default, immediately, daily digest, or off."""

    def __init__(self, *args: Any, tenant_default: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        default_label = f"The firm's default ({EmailPreference(tenant_default).label.lower()})"
        for kind, label in NotificationKind.choices:
            self.fields[kind] = forms.ChoiceField(
                label=label,
                choices=[(DEFAULT, default_label), *EmailPreference.choices],
                widget=forms.RadioSelect,
            )

    def changes(self) -> dict[str, str | None]:
        return {kind: (None if value == DEFAULT else value) for kind, value in self.cleaned_data.items()}


def _initial(member: preferences.MemberPreferences) -> dict[str, str]:
    return {kind: value or DEFAULT for kind, value in member.chosen.items()}


@method_decorator(never_cache, name="dispatch")
class PreferencesView(View):
    """The person's email choices for each kind, from a signed link; an ordinary form (CSRF-protected)."""

    http_method_names = ["get", "post"]

    def _member(self, token: str) -> tuple[preferences.LinkSubject, preferences.MemberPreferences]:
        subject = preferences.preferences_token_read(token)
        return subject, preferences.link_preferences_get(subject=subject)

    def _render(self, request: HttpRequest, member: preferences.MemberPreferences, form: Any, **extra: Any) -> Any:
        context = {"tenant_name": member.tenant_name, "form": form, **extra}
        return _page(request, "preferences.html", context, status=400 if form.errors else 200)

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        try:
            _, member = self._member(token)
        except (InvalidLinkToken, UnknownMember) as exc:
            return _bad_link(request, str(exc))
        return self._render(
            request, member, PreferencesForm(initial=_initial(member), tenant_default=member.tenant_default)
        )

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        try:
            subject, member = self._member(token)
        except (InvalidLinkToken, UnknownMember) as exc:
            return _bad_link(request, str(exc))
        form = PreferencesForm(request.POST, tenant_default=member.tenant_default)
        if not form.is_valid():
            return self._render(request, member, form)
        try:
            saved = preferences.link_preferences_set(subject=subject, changes=form.changes())
        except InvalidPreferences as exc:
            for kind, message in exc.errors.items():
                form.add_error(kind if kind in form.fields else None, message)
            return self._render(request, member, form)
        except UnknownMember as exc:
            return _bad_link(request, str(exc))
        fresh = PreferencesForm(initial=_initial(saved), tenant_default=saved.tenant_default)
        return self._render(request, saved, fresh, saved=True)


unsubscribe = UnsubscribeView.as_view()
preferences_page = PreferencesView.as_view()
