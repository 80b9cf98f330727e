"""The email claim's pacing counts a tenth of the window, not a second more.

``notifications_emails_claim`` (``0008_email_trace_context``) paces a rate limit: at most a
tenth of the limit in a tenth of the window. It counted the starts of the whole-second
slots from ``ceil(pace)`` seconds back to the current one, one slot more than the pace: a
limit of 100 a minute let out about 86. It now counts ``ceil(pace)`` slots. The limit's own
window (no 60 s with more than 100) is counted as before.
"""

import importlib

from django.db import migrations

_TRACE_CONTEXT = importlib.import_module("notifications.migrations.0008_email_trace_context")

_OLD_PACE = "AND slot.slot >= date_trunc('second', clock_timestamp()) - make_interval(secs => ceil(pace_seconds));"
_NEW_PACE = "AND slot.slot > date_trunc('second', clock_timestamp()) - make_interval(secs => ceil(pace_seconds));"


def _claim_of(text: str) -> str:
    """The claim function's definition out of 0008's statements, as CREATE OR REPLACE."""
    start = text.index("CREATE FUNCTION notifications_emails_claim(")
    end = text.index("$$;", text.index("AS $$", start) + len("AS $$")) + len("$$;")
    return text[start:end].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


OLD_CLAIM = _claim_of(_TRACE_CONTEXT.CLAIM)
if OLD_CLAIM.count(_OLD_PACE) != 1:
    raise RuntimeError("0008_email_trace_context's claim is not the text this migration rewrites")
NEW_CLAIM = OLD_CLAIM.replace(_OLD_PACE, _NEW_PACE)


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0008_email_trace_context"),
    ]

    operations = [
        migrations.RunSQL(NEW_CLAIM, OLD_CLAIM),
    ]
