"""What a digest says: its subject, its grouping and its links (pure functions, no database)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from compliance.models import Tenant
from notifications.digests import DigestItem, digest_compose, digest_cutoff, digest_day_due, digest_subject
from notifications.links import AppRoutes

AS_OF = date(2026, 11, 29)
NO_APP = AppRoutes(base="")
APP = AppRoutes(base="https://app.example.com")


def doc(n, *, client_id, client, urgency="NORMAL", expires="2026-12-13"):
    data = {"documentId": n, "clientId": client_id, "clientName": client, "documentType": "TIN", "expiresOn": expires}
    return DigestItem(n, "document_expiry", urgency, f"Document {n}", data)


def filing(n, *, client_id, client, urgency="HIGH", due="2026-12-03"):
    data = {"filingId": n, "clientId": client_id, "clientName": client, "filingType": "VAT", "period": "2026-11"}
    data["dueDate"] = due
    return DigestItem(n, "filing_reminder", urgency, f"Filing {n}", data)


@pytest.mark.parametrize(
    ("counts", "subject"),
    [
        ({"document_expiry": 3, "filing_reminder": 2}, "3 documents expiring, 2 filings due: Kestrel Tax"),
        ({"document_expiry": 1}, "1 document expiring: Kestrel Tax"),
        ({"filing_reminder": 1, "compliance_alert": 2}, "1 filing due, 2 compliance alerts: Kestrel Tax"),
        ({"compliance_alert": 1}, "1 compliance alert: Kestrel Tax"),
    ],
)
def test_subject_counts_what_is_inside(counts, subject):
    assert digest_subject(counts=counts, tenant_name="Kestrel Tax") == subject


def test_subject_of_a_long_firm_name_fits_on_one_line():
    subject = digest_subject(counts={"document_expiry": 2}, tenant_name="Kestrel\u2028" + "K" * 400)
    assert (len(subject), subject[-1], "\u2028" in subject) == (300, "…", False)


def test_items_are_grouped_by_kind_then_by_client_most_urgent_first():
    items = [
        doc(1, client_id=1, client="Acme", expires="2026-12-20"),
        filing(2, client_id=2, client="Beta"),
        doc(3, client_id=2, client="Beta", urgency="HIGH", expires="2026-12-04"),
        doc(4, client_id=1, client="Acme", urgency="HIGH", expires="2026-12-05"),
        filing(5, client_id=1, client="Acme", urgency="URGENT", due="2026-12-01"),
    ]
    context = digest_compose(items=items, tenant_name="Kestrel", as_of=AS_OF, routes=NO_APP).context
    layout = [
        (group["heading"], [(c["clientName"], [i["title"] for i in c["items"]]) for c in group["clients"]])
        for group in context["groups"]
    ]
    assert layout == [
        (
            "Documents expiring",
            [
                ("Beta", ["TIN for Beta expires in 5 days"]),
                ("Acme", ["TIN for Acme expires in 6 days", "TIN for Acme expires in 21 days"]),
            ],
        ),
        (
            "Filings due",
            [
                ("Acme", ["Urgent: VAT 2026-11 for Acme is due in 2 days"]),
                ("Beta", ["VAT 2026-11 for Beta is due in 4 days"]),
            ],
        ),
    ]
    assert context["total"] == 5


def test_days_left_are_counted_from_the_digest_day():
    item = doc(1, client_id=1, client="Acme", expires="2026-12-04")
    [group] = digest_compose(items=[item], tenant_name="K", as_of=AS_OF, routes=NO_APP).context["groups"]
    line = group["clients"][0]["items"][0]
    assert (line["title"], line["detail"]) == (
        "TIN for Acme expires in 5 days",
        "TIN expires on Friday 4 December 2026",
    )


def test_items_link_to_their_page_in_the_web_app():
    items = [doc(7, client_id=3, client="Acme"), filing(8, client_id=3, client="Acme")]
    groups = digest_compose(items=items, tenant_name="K", as_of=AS_OF, routes=APP).context["groups"]
    urls = [item["url"] for group in groups for client in group["clients"] for item in client["items"]]
    assert urls == ["https://app.example.com/clients/3/documents/7", "https://app.example.com/filings/8"]


def test_no_links_without_an_app_url():
    [group] = digest_compose(
        items=[doc(7, client_id=3, client="Acme")], tenant_name="K", as_of=AS_OF, routes=NO_APP
    ).context["groups"]
    assert group["clients"][0]["items"][0]["url"] == ""


@pytest.mark.parametrize(
    ("zone", "at", "due"),
    [
        ("UTC", datetime(2026, 11, 29, 8, 59, tzinfo=UTC), None),
        ("UTC", datetime(2026, 11, 29, 9, 0, tzinfo=UTC), date(2026, 11, 29)),
        ("UTC", datetime(2026, 11, 29, 23, 0, tzinfo=UTC), date(2026, 11, 29)),  # a late tick catches up
        ("Asia/Kolkata", datetime(2026, 11, 29, 3, 0, tzinfo=UTC), None),  # 08:30 there
        ("Asia/Kolkata", datetime(2026, 11, 29, 4, 0, tzinfo=UTC), date(2026, 11, 29)),  # 09:30 there
        ("Pacific/Auckland", datetime(2026, 11, 29, 20, 0, tzinfo=UTC), date(2026, 11, 30)),  # 09:00 next day there
        ("America/New_York", datetime(2026, 11, 30, 3, 0, tzinfo=UTC), date(2026, 11, 29)),  # 22:00 the day before
    ],
)
def test_the_digest_is_due_from_the_digest_hour_to_the_end_of_the_local_day(zone, at, due):
    assert digest_day_due(tenant=Tenant(timezone=zone), at=at, hour=9) == due


def test_the_cutoff_is_the_digest_hour_in_the_tenants_time_zone():
    cutoff = digest_cutoff(tenant=Tenant(timezone="Asia/Kolkata"), day=date(2026, 11, 29), hour=9)
    assert cutoff == datetime(2026, 11, 29, 3, 30, tzinfo=UTC)
