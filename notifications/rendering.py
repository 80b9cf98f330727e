"""Email templates: one branded, mobile-friendly HTML layout (CSS inlined) plus a text part.

The data each template needs is declared once in ``TEMPLATE_FIELDS``; a missing or
malformed field is a permanent error naming it (the same data would fail the same way
on every retry). The templates (``notifications/email_templates/``) are Jinja2's: every
email of a morning is rendered on the send path, where Django's template engine cost
three times as much. Data is HTML-escaped in the ``.html`` templates; the ``.txt`` ones
are not HTML and are not escaped. Dates and plurals use Django's own filters, so they
read as the rest of the product writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import css_inline
import jinja2
from django.template import defaultfilters

from notifications.exceptions import NotificationError
from notifications.preferences import EmailLinks

TEMPLATE_DIR = Path(__file__).resolve().parent / "email_templates"


class EmailDataError(NotificationError, ValueError):
    """Template data that cannot be rendered; ``field`` names the culprit."""

    def __init__(self, template: str, field: str, problem: str) -> None:
        self.template = template
        self.field = field
        super().__init__(f"template {template!r}: data field {field!r} {problem}")


# Field kinds: "text" (a non-empty string or number), "date" (ISO yyyy-mm-dd), "int",
# "number", "list" (of strings), "groups" (the digest's items grouped by kind and client).
TEMPLATE_FIELDS: dict[str, dict[str, str]] = {
    "document-expiry": {
        "documentTitle": "text",
        "documentType": "text",
        "clientName": "text",
        "expiresOn": "date",
        "daysLeft": "int",
        "tenantName": "text",
    },
    "filing-reminder": {
        "filingType": "text",
        "period": "text",
        "clientName": "text",
        "dueDate": "date",
        "daysLeft": "int",
        "urgency": "text",
        "tenantName": "text",
    },
    "compliance-alert": {
        "clientName": "text",
        "complianceScore": "number",
        "complianceLevel": "text",
        "issues": "list",
        "recommendations": "list",
    },
    "filing-escalation": {
        "filingType": "text",
        "period": "text",
        "clientName": "text",
        "dueDate": "date",
        "daysOverdue": "int",
        "everyDays": "int",
        "assignees": "list",
        "tenantName": "text",
    },
    "custom": {"body": "text"},
    "daily-digest": {"tenantName": "text", "total": "int", "groups": "groups"},
}

# A sample of each template's data, for ``send_test_email`` and the tests.
SAMPLE_DATA: dict[str, dict[str, Any]] = {
    "document-expiry": {
        "documentId": 1,
        "clientId": 1,
        "documentTitle": "TIN Certificate",
        "documentType": "TIN Certificate",
        "clientName": "ACME Corp",
        "expiresOn": "2026-12-29",
        "daysLeft": 30,
        "tenantName": "Example Accounting",
    },
    "filing-reminder": {
        "filingId": 1,
        "clientId": 1,
        "filingType": "VAT Return",
        "period": "2026-11",
        "clientName": "ACME Corp",
        "dueDate": "2026-12-06",
        "daysLeft": 7,
        "urgency": "HIGH",
        "tenantName": "Example Accounting",
    },
    "filing-escalation": {
        "filingId": 1,
        "clientId": 1,
        "filingType": "VAT Return",
        "period": "2026-04",
        "clientName": "ACME Corp",
        "dueDate": "2026-05-18",
        "statutoryDueDate": "2026-05-16",
        "dueNote": "moved from Saturday 16 May: weekend",
        "daysOverdue": 8,
        "everyDays": 7,
        "assignees": ["Amina Otieno"],
        "status": "draft",
        "tenantName": "Example Accounting",
    },
    "compliance-alert": {
        "clientName": "ACME Corp",
        "complianceScore": 65,
        "complianceLevel": "amber",
        "issues": ["Missing TIN Certificate", "VAT Filing Overdue"],
        "recommendations": ["Upload TIN Certificate", "Submit VAT Filing"],
    },
    "custom": {"body": "Hello,\n\nThis is a test message from KGC Compliance Cloud."},
    "daily-digest": {
        "tenantName": "Example Accounting",
        "asOf": "2026-11-29",
        "dateLine": "Sunday 29 November 2026",
        "resolved": 1,
        "total": 2,
        "groups": [
            {
                "heading": "Documents expiring",
                "count": 1,
                "clients": [
                    {
                        "clientName": "ACME Corp",
                        "items": [
                            {
                                "title": "TIN Certificate for ACME Corp expires in 5 days",
                                "urgency": "normal",
                                "urgencyLabel": "Normal",
                                "detail": "TIN Certificate expires on 4 December 2026, in 5 days",
                                "url": "",
                            }
                        ],
                    }
                ],
            },
            {
                "heading": "Filings due",
                "count": 1,
                "clients": [
                    {
                        "clientName": "ACME Corp",
                        "items": [
                            {
                                "title": "Urgent: VAT Return 2026-11 for ACME Corp is due in 2 days",
                                "urgency": "urgent",
                                "urgencyLabel": "Urgent",
                                "detail": "VAT Return 2026-11 due on 1 December 2026, in 2 days",
                                "url": "",
                            }
                        ],
                    }
                ],
            },
        ],
    },
}

_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


def _linebreaks(value: Any) -> Any:
    return defaultfilters.linebreaks_filter(value, autoescape=True)  # Django's SafeString: Jinja keeps it as is


_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
    keep_trailing_newline=True,
    auto_reload=False,  # loaded once per process; a deploy restarts the workers
)
_TEMPLATES.filters.update(
    date=defaultfilters.date,
    pluralize=defaultfilters.pluralize,
    linebreaks=_linebreaks,
)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def _field_value(template: str, field: str, kind: str, value: Any) -> Any:
    """One field, checked and converted for display; raises EmailDataError naming it."""
    if value is None:  # absent or null; an empty string or list is data, shown as it is
        raise EmailDataError(template, field, "is missing")
    if kind == "date":
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            return date.fromisoformat(value)
        except ValueError:
            raise EmailDataError(template, field, f"must be an ISO date (yyyy-mm-dd), got {value!r}") from None
    if kind in ("int", "number"):
        types: tuple[type, ...] = (int,) if kind == "int" else (int, float)
        if isinstance(value, bool) or not isinstance(value, types):
            raise EmailDataError(template, field, f"must be a {'whole ' if kind == 'int' else ''}number, got {value!r}")
        return value
    if kind == "groups":
        if not isinstance(value, list) or not all(
            isinstance(group, dict) and isinstance(group.get("clients"), list) for group in value
        ):
            raise EmailDataError(template, field, "must be a list of groups, each with its clients")
        return value
    if kind == "list":
        if not isinstance(value, list) or not all(isinstance(item, str | int | float) for item in value):
            raise EmailDataError(template, field, "must be a list of strings")
        return [str(item) for item in value]
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise EmailDataError(template, field, f"must be text, got {type(value).__name__}")
    return str(value)


def template_context(template: str, data: dict[str, Any]) -> dict[str, Any]:
    """The template's context from its data: every declared field present and well-formed.

    Pure: raises ``EmailDataError`` for an unknown template or the first bad field.
    Fields the template does not declare (ids, extras) pass through unchanged.
    """
    try:
        fields = TEMPLATE_FIELDS[template]
    except KeyError:
        raise EmailDataError(template, "template", f"is unknown; known: {', '.join(TEMPLATE_FIELDS)}") from None
    if not isinstance(data, dict):
        raise EmailDataError(template, "data", "must be an object")
    checked = {field: _field_value(template, field, kind, data.get(field)) for field, kind in fields.items()}
    return {**data, **checked}


def template_data_errors(template: str, data: dict[str, Any]) -> dict[str, str]:
    """What is wrong with a template's data (empty when it renders); for enqueue-time checks."""
    try:
        template_context(template, data)
    except EmailDataError as exc:
        return {"data": str(exc)}
    return {}


def email_render(
    *, template: str, subject: str, data: dict[str, Any], tenant_name: str, links: EmailLinks | None = None
) -> RenderedEmail:
    """Render one email: the HTML part on the shared layout, CSS inlined, and the text part.

    With ``links`` (an email to a member, with a public URL), the footer links to the
    person's preferences page and to one-click unsubscribe.
    """
    context = {
        **template_context(template, data),
        "subject": subject,
        "tenant_name": tenant_name,
        "preferences_url": links.preferences_url if links else "",
        "unsubscribe_url": links.unsubscribe_url if links else "",
        "unsubscribe_what": links.unsubscribe_what if links else "",
    }
    html = _TEMPLATES.get_template(f"{template}.html").render(context)
    text = _TEMPLATES.get_template(f"{template}.txt").render(context)
    return RenderedEmail(subject=subject, text=text.strip() + "\n", html=_INLINER.inline(html))
