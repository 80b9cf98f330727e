"""Templates: one branded layout with CSS inlined, a text part, data HTML-escaped."""

from __future__ import annotations

import pytest

from notifications.rendering import SAMPLE_DATA, TEMPLATE_FIELDS, email_render


def render(template: str = "compliance-alert", **data):
    return email_render(
        template=template, subject="Alert", data={**SAMPLE_DATA[template], **data}, tenant_name="Firm & Co"
    )


@pytest.mark.parametrize("template", list(TEMPLATE_FIELDS))
def test_every_template_renders_on_the_shared_branded_layout(template):
    rendered = render(template)
    assert "KGC Compliance Cloud" in rendered.html
    assert 'name="viewport"' in rendered.html
    assert "KGC Compliance Cloud" in rendered.text


def test_css_is_inlined_and_media_queries_kept():
    html = render().html
    assert '<td class="card" style="background-color: #ffffff;' in html
    assert "@media only screen and (max-width: 620px)" in html
    assert ".card h1 {" not in html  # the inlined rules are gone from the <style> block


def test_template_data_is_html_escaped():
    rendered = render(clientName="<script>alert(1)</script>", issues=["<b>bold</b>"])
    assert "<script>alert(1)</script>" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert "&lt;b&gt;bold&lt;/b&gt;" in rendered.html


def test_text_part_is_not_html_escaped():
    rendered = render(clientName="Smith & Sons <Ltd>")
    assert "Smith & Sons <Ltd> has a compliance score of 65 (amber)." in rendered.text


def test_tenant_name_is_escaped_in_the_layout():
    assert "Firm &amp; Co" in render().html


def test_dates_are_shown_in_words():
    assert "Expires on: 29 December 2026" in render("document-expiry").text


def test_custom_body_keeps_its_paragraphs():
    html = render("custom", body="First line\n\nSecond <para>").html
    assert ">First line</p>" in html
    assert ">Second &lt;para&gt;</p>" in html


def test_empty_lists_render_as_none():
    rendered = render(issues=[], recommendations=[])
    assert "Issues:\n- None" in rendered.text
    assert "<li>None</li>" in rendered.html
