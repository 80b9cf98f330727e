"""Writing an email's MIME form directly: headers and a text + HTML multipart/alternative.

Python's email package parses, re-models and refolds every header through its header
registry, and did so twice per send: most of a send's CPU. The messages sent here have
one fixed shape and header values checked before they get here (one line each, see
``notifications.texts.header_text``), so they are written out directly, following
RFC 5322 and RFC 2045–2047:

* ASCII header values as they are, folded at spaces to 78 columns where possible;
  others as UTF-8 encoded words (base64), never splitting a character between two;
* a display name quoted when it holds specials, or encoded when it is not ASCII; a
  domain that is not ASCII in its IDNA form;
* each part UTF-8, 7bit when it is ASCII with short lines, quoted-printable otherwise;
* CRLF line endings throughout, as SMTP sends them.

``PreparedEmail`` carries those bytes in Django's email API: the SMTP backend sends
them as they are, and anything that looks inside the message (a test, a provider that
adds a header) gets it parsed, with its changes kept. The functions are pure: the
tests read every message back with the email package.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import functools
import random
import re
import smtplib
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any

from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends import smtp

CRLF = "\r\n"
MAX_LINE = 78
_WORD_BYTES = 42  # 42 bytes of UTF-8 make 56 base64 characters: "=?utf-8?b?" + 56 + "?=" is 68 columns
# RFC 5322 "specials": a display name with any of them is sent as a quoted string.
_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')
# The addresses sent: a dot-atom local part (RFC 5322 atext) and a host name. Anything
# else (a quoted local part, a comment, a domain literal) is refused rather than guessed at.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_PART = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")
# A word longer than this cannot be folded onto a line of its own within SMTP's 998.
_LONGEST_WORD = 900
# Headers whose value has a syntax of its own: it must be ASCII (no encoded words).
STRUCTURED = frozenset({"message-id", "date", "list-unsubscribe", "list-unsubscribe-post"})


class MimeError(ValueError):
    """A value that no header can carry (a line break, a non-ASCII local part)."""


def _check_one_line(name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise MimeError(f"{name}: a header value must be one line")


def encoded_words(value: str) -> list[str]:
    """``value`` as RFC 2047 encoded words, each short enough for its own folded line."""
    words, chunk = [], b""
    for char in value:
        encoded = char.encode("utf-8")
        if chunk and len(chunk) + len(encoded) > _WORD_BYTES:
            words.append(chunk)
            chunk = b""
        chunk += encoded
    if chunk:
        words.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(word).decode('ascii')}?=" for word in words]


def _fold(name: str, tokens: Sequence[str]) -> str:
    """``Name: token token...`` folded before a token whenever a line would pass 78 columns."""
    lines, line = [], f"{name}:"
    for token in tokens:
        if len(line) + 1 + len(token) > MAX_LINE and line.strip() != f"{name}:":
            lines.append(line)
            line = ""
        line = f"{line} {token}"
    lines.append(line)
    return CRLF.join(lines)


def header(name: str, value: str) -> str:
    """One header line (folded when long); non-ASCII text, or a word too long to fold, as
    encoded words. A structured header (a Message-ID, a URL) must be ASCII already."""
    _check_one_line(name, value)
    words = value.split(" ")
    plain = value.isascii() and all(len(word) <= _LONGEST_WORD for word in words)
    if plain:
        return _fold(name, words)
    if name.lower() in STRUCTURED:
        raise MimeError(f"{name}: must be ASCII, in words of at most {_LONGEST_WORD} characters")
    return _fold(name, encoded_words(value))


def address_header(name: str, display_name: str, addr_spec: str) -> str:
    """A To or From header line: ``Name <local@domain>``, quoted or encoded as need be."""
    return _fold(name, address(display_name, addr_spec).split(" "))


def envelope_address(addr_spec: str) -> str:
    """``local@domain`` as SMTP carries it: ASCII, a domain that is not ASCII in its IDNA form."""
    _check_one_line("address", addr_spec)
    local, at, domain = addr_spec.rpartition("@")
    if not at or not local or not domain:
        raise MimeError(f"{addr_spec!r} is not an address (local@domain)")
    if not local.isascii():
        raise MimeError(f"{addr_spec!r}: the part before @ must be ASCII")
    if not _LOCAL_PART.fullmatch(local):
        raise MimeError(f"{addr_spec!r}: the part before @ may hold letters, digits and !#$%&'*+/=?^_`{{|}}~.- only")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise MimeError(f"{addr_spec!r}: the domain cannot be encoded ({exc})") from None
    if not _DOMAIN.fullmatch(domain) or len(domain) > 253:
        raise MimeError(f"{addr_spec!r}: the part after @ is not a host name")
    return f"{local}@{domain}"


def address(display_name: str, addr_spec: str) -> str:
    """``Name <local@domain>``, the display name quoted or encoded as need be."""
    _check_one_line("address", display_name)
    spec = f"<{envelope_address(addr_spec)}>"
    if not display_name:
        return spec
    if not display_name.isascii():
        return " ".join([*encoded_words(display_name), spec])
    if _SPECIALS.search(display_name):
        quoted = display_name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" {spec}'
    return f"{display_name} {spec}"


def _body(content: str, subtype: str) -> str:
    """A part's headers and body: 7bit when ASCII with short lines, else quoted-printable."""
    text = content.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if text.isascii() and all(len(line) <= MAX_LINE for line in lines):
        encoding, payload = "7bit", CRLF.join(lines)
    else:
        encoding = "quoted-printable"
        payload = binascii.b2a_qp(text.encode("utf-8"), istext=True).decode("ascii").replace("\n", CRLF)
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"{CRLF}Content-Transfer-Encoding: {encoding}{CRLF}{CRLF}{payload}'
    )


def mime_message(*, header_lines: Sequence[str], text: str, html: str, boundary: str | None = None) -> bytes:
    """The whole message: the header lines (from ``header`` and ``address_header``), then a
    multipart/alternative with the text part first and the HTML part last (the one mail
    clients prefer to show); a text part alone when there is no HTML."""
    if not html:
        return CRLF.join([*header_lines, "MIME-Version: 1.0", _body(text, "plain"), ""]).encode("ascii")
    # Only unlikely to occur in the parts, not secret: no system call per message for it.
    boundary = boundary or f"=={random.getrandbits(128):032x}=="  # noqa: S311
    parts = CRLF.join(
        [
            *header_lines,
            "MIME-Version: 1.0",
            f'Content-Type: multipart/alternative;{CRLF} boundary="{boundary}"',
            "",
            f"--{boundary}",
            _body(text, "plain"),
            f"--{boundary}",
            _body(html, "html"),
            f"--{boundary}--",
            "",
        ]
    )
    return parts.encode("ascii")


class _Serialised:
    """What ``PreparedEmail.message()`` returns: ``as_bytes`` gives the prepared bytes; any
    other use parses them into an ``email.message.EmailMessage``, which from then on is
    the message (so that a header a provider adds is sent)."""

    def __init__(self, data: bytes, policy: Any) -> None:
        self._data = data
        self._policy = policy
        self._parsed: EmailMessage | None = None

    def _message(self) -> EmailMessage:
        if self._parsed is None:
            self._parsed = email.message_from_bytes(self._data, _class=EmailMessage, policy=self._policy)
        return self._parsed

    def as_bytes(self, *args: Any, **kwargs: Any) -> bytes:
        return self._data if self._parsed is None else self._parsed.as_bytes(*args, **kwargs)

    def as_string(self, *args: Any, **kwargs: Any) -> str:
        return self._data.decode("ascii") if self._parsed is None else self._parsed.as_string(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._message(), name)

    def __getitem__(self, name: str) -> Any:
        return self._message()[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self._message()[name] = value

    def __delitem__(self, name: str) -> None:
        del self._message()[name]

    def __contains__(self, name: str) -> bool:
        return name in self._message()


@functools.lru_cache(maxsize=64)
def _parsed(address: str) -> tuple[str, str]:
    """``parseaddr``, once per sender: every message of a run has the same one."""
    return parseaddr(address)


class PreparedEmail(EmailMultiAlternatives):
    """A text + HTML email whose MIME form is written once by ``prepare`` (this module's
    functions), instead of twice through the email package's header machinery."""

    _prepared: bytes | None = None
    envelope: tuple[str, list[str]] | None = None  # SMTP's MAIL FROM and RCPT TO, checked

    def prepare(self, *, to_name: str, to_email: str, now: datetime | None = None) -> None:
        """Write the message's bytes; raises ``MimeError`` for values no header can carry."""
        from_name, from_addr = _parsed(self.from_email)
        html = next((content for content, mimetype in self.alternatives if mimetype == "text/html"), "")
        lines = [
            address_header("From", from_name, from_addr),
            address_header("To", to_name, to_email),
            header("Subject", str(self.subject)),
            header("Date", format_datetime(now or datetime.now(tz=UTC))),
            *(header(name, str(value)) for name, value in self.extra_headers.items()),
        ]
        self._prepared = mime_message(header_lines=lines, text=str(self.body), html=str(html))
        self.envelope = (envelope_address(from_addr), [envelope_address(to_email)])

    @property
    def prepared(self) -> bytes | None:
        return self._prepared

    def message(self, *, policy: Any = email.policy.default) -> Any:
        if self._prepared is None:
            return super().message(policy=policy)
        return _Serialised(self._prepared, policy)


class SMTPBackend(smtp.EmailBackend):
    """Django's SMTP backend, sending a ``PreparedEmail``'s bytes and envelope as they are
    (already checked), rather than parsing its addresses and building its MIME form again."""

    def _send(self, email_message: Any) -> bool:
        prepared = isinstance(email_message, PreparedEmail) and email_message.prepared and email_message.envelope
        if not prepared or self.connection is None:
            return bool(super()._send(email_message))  # type: ignore[misc]
        sender, recipients = email_message.envelope
        try:
            self.connection.sendmail(sender, recipients, email_message.prepared)
        except smtplib.SMTPException:
            if not self.fail_silently:
                raise
            return False
        return True
