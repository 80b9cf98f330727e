"""Generated text fitted to its column and its header: pure functions, no database."""

from __future__ import annotations

import pytest

from notifications.texts import header_text, text_fit


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("exactly10!", 10, "exactly10!"),
        ("eleven char", 10, "eleven ch…"),
        ("word     spaces", 7, "word…"),  # no space left dangling before the ellipsis
        ("Müller Ökonomie", 8, "Müller…"),
        ("e\u0301e\u0301e\u0301e\u0301", 4, "e\u0301…"),  # never a base letter without its accent
        ("👩\u200d👩\u200d👧 family", 5, "…"),  # nor half of a joined emoji
    ],
)
def test_text_is_cut_at_a_character_boundary_with_an_ellipsis(text, limit, expected):
    fitted = text_fit(text, limit)
    assert fitted == expected
    assert len(fitted) <= limit


@pytest.mark.parametrize(
    "separator", ["\r", "\n", "\r\n", "\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85"]
)
def test_line_separators_become_spaces_in_header_text(separator):
    assert header_text(f"ACME{separator}Corp") == "ACME Corp"


def test_header_text_keeps_ordinary_text_as_it_is():
    assert header_text("Ökonomie & Partner: VAT 2026-10") == "Ökonomie & Partner: VAT 2026-10"
