"""Request bodies: pure rules, no database."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest

from kgc.api import parsing
from kgc.api.auth import bearer_token, token_valid


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", {}),
        (b"  \n", {}),
        (b"{}", {}),
        (b'{"tenantId": 3}', {"tenantId": 3}),
        ('{"subject": "Gr\u00fc\u00dfe"}'.encode(), {"subject": "Gr\u00fc\u00dfe"}),
    ],
)
def test_body_parse_accepts(raw, expected):
    assert parsing.body_parse(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{", "not valid UTF-8 JSON"),
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        (b"NaN", "not valid UTF-8 JSON"),
        (b'{"data": {"x": Infinity}}', "not valid UTF-8 JSON"),
        (b"[" * 5000 + b"]" * 5000, "not valid UTF-8 JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b"null", "must be a JSON object"),
    ],
)
def test_body_parse_refuses_what_is_not_a_json_object(raw, message):
    with pytest.raises(parsing.InvalidRequest, match=message):
        parsing.body_parse(raw)


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        (b'{"subject": "a\\u0000b"}', "subject", "NUL"),
        (b'{"data": {"k\\u0000": 1}}', "data", "NUL"),
        (b'{"recipientName": "\\ud800"}', "recipientName", "surrogates"),
        (b'{"data": {"big": 1e400}}', "data", "finite"),
        (b'{"data": ' + b"[" * 40 + b"]" * 40 + b"}", "data", "nest deeper"),
    ],
)
def test_body_parse_refuses_values_postgresql_cannot_store(raw, field, message):
    with pytest.raises(parsing.InvalidRequest) as caught:
        parsing.body_parse(raw)
    assert message in caught.value.errors[field]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, {"tenant_id": None, "triggered_by": "manual", "priority": None}),
        (
            {"tenantId": None, "triggeredBy": None, "priority": None},
            {"tenant_id": None, "triggered_by": "manual", "priority": None},
        ),
        (
            {"tenantId": 7, "triggeredBy": "filing_update", "priority": 1},
            {"tenant_id": 7, "triggered_by": "filing_update", "priority": 1},
        ),
        ({"tenantId": "acme-tax"}, {"tenant_id": "acme-tax", "triggered_by": "manual", "priority": None}),
    ],
)
def test_compliance_refresh_args(body, expected):
    assert parsing.compliance_refresh_args(body) == expected


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"tenantId": ""}, {"tenantId": f"must be a tenant id or a slug of 1 to {parsing.MAX_SLUG} characters"}),
        ({"tenantId": "x" * 101}, {"tenantId": f"must be a tenant id or a slug of 1 to {parsing.MAX_SLUG} characters"}),
        ({"tenantId": 1.5}, {"tenantId": "must be an integer"}),
        ({"tenantId": True}, {"tenantId": "must be an integer"}),
        ({"tenantId": 0}, {"tenantId": f"must be from 1 to {parsing.MAX_ID}"}),
        ({"tenantId": 2**63}, {"tenantId": f"must be from 1 to {parsing.MAX_ID}"}),
        ({"triggeredBy": 5}, {"triggeredBy": "must be a string"}),
        ({"priority": "high"}, {"priority": "must be an integer"}),
        ({"tenantid": 1, "priority": []}, {"tenantid": "unknown field", "priority": "must be an integer"}),
    ],
)
def test_compliance_refresh_args_name_each_bad_field(body, errors):
    with pytest.raises(parsing.InvalidRequest) as caught:
        parsing.compliance_refresh_args(body)
    assert caught.value.errors == errors


def test_email_args_name_every_missing_field():
    with pytest.raises(parsing.InvalidRequest) as caught:
        parsing.email_args({"subject": "Hello", "template": None})
    assert caught.value.errors == {
        "recipientEmail": "is required",
        "recipientName": "is required",
        "template": "is required",
        "data": "is required",
        "tenantId": "is required",
    }


def test_email_args_pass_values_on_in_snake_case():
    body = {
        "recipientEmail": "a@example.com",
        "recipientName": "A",
        "subject": "S",
        "template": "custom",
        "data": {"k": 1},
        "tenantId": 4,
    }
    assert parsing.email_args(body) == {
        "recipient_email": "a@example.com",
        "recipient_name": "A",
        "subject": "S",
        "template": "custom",
        "data": {"k": 1},
        "tenant_id": 4,
        "priority": None,
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, {"completed_age": None, "failed_age": None}),
        ({"completedAge": 0}, {"completed_age": timedelta(0), "failed_age": None}),
        (
            {"completedAge": 86_400_000, "failedAge": 1500},
            {"completed_age": timedelta(days=1), "failed_age": timedelta(seconds=1.5)},
        ),
    ],
)
def test_cleanup_args_are_milliseconds(body, expected):
    assert parsing.cleanup_args(body) == expected


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"completedAge": -1}, "completedAge"),
        ({"failedAge": 1.5}, "failedAge"),
        ({"failedAge": "7d"}, "failedAge"),
        ({"completedAge": parsing.MAX_AGE_MS + 1}, "completedAge"),
        ({"olderThan": 5}, "olderThan"),
    ],
)
def test_cleanup_args_refuse_what_is_not_a_non_negative_integer(body, field):
    with pytest.raises(parsing.InvalidRequest) as caught:
        parsing.cleanup_args(body)
    assert list(caught.value.errors) == [field]


@pytest.mark.parametrize(
    ("snake", "camel"),
    [("recipient_email", "recipientEmail"), ("data", "data"), ("tenant_id", "tenantId")],
)
def test_camel_case(snake, camel):
    assert parsing.camel_case(snake) == camel


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic abc", None),
        ("abc", None),
        ("", None),
    ],
)
def test_bearer_token(header, token):
    assert bearer_token(header) == token


@pytest.mark.parametrize(
    ("token", "tokens", "valid"),
    [
        ("new", ["old", "new"], True),
        ("old", ["old", "new"], True),
        ("ne", ["old", "new"], False),
        ("newer", ["old", "new"], False),
        ("new", [], False),
        ("caf\u00e9", ["caf\u00e9"], False),  # a header is latin-1 text: é arrives as two characters
        ("caf\u00c3\u00a9", ["caf\u00e9"], True),
    ],
)
def test_token_valid(token, tokens, valid):
    assert token_valid(token, tokens) is valid


@pytest.mark.parametrize(
    ("size", "content_length", "transfer_encoding", "outcome"),
    [
        (10, "10", "", 10),
        (parsing.MAX_BODY_BYTES, str(parsing.MAX_BODY_BYTES), "", parsing.MAX_BODY_BYTES),
        (0, "", "", 0),
        (10, str(parsing.MAX_BODY_BYTES + 1), "", parsing.BodyTooLarge),  # declared too large: nothing read
        (parsing.MAX_BODY_BYTES + 1, "", "", parsing.BodyTooLarge),  # arrives too large, whatever was declared
        (parsing.MAX_BODY_BYTES + 1, "12", "", parsing.BodyTooLarge),
        (10, "", "chunked", parsing.LengthRequired),
    ],
)
def test_body_read_limits_the_body(size, content_length, transfer_encoding, outcome):
    stream = io.BytesIO(b"x" * size)
    if isinstance(outcome, int):
        assert (
            len(parsing.body_read(stream.read, content_length=content_length, transfer_encoding=transfer_encoding))
            == outcome
        )
    else:
        with pytest.raises(outcome):
            parsing.body_read(stream.read, content_length=content_length, transfer_encoding=transfer_encoding)
