"""Handing messages to the mail server or provider, and saying exactly what happened.

Every send ends in one of four results (``SendResult``):

* ``sent``: the server or provider took the message (its reply, its message id);
* ``retry``: it was **not** handed over, or the server said so with a 4xx reply: sending
  again is safe (a refused or dropped connection, a timeout before the data was sent,
  a 4xx at MAIL, RCPT, DATA or after the data);
* ``failed``: it was refused for good (a 5xx, a provider's 4xx, a message no server takes);
* ``unknown``: it was handed over and no answer came (no reply after the final ".", a
  provider's read timeout or dropped connection after the request went out). It may have
  arrived: it is never sent again on a guess.

``SmtpTransport`` speaks SMTP asynchronously (aiosmtplib): many sends in flight on one
thread, each on a kept-open connection of its own, with a timeout per command
(``SMTP_TIMEOUT``) and a long wait for the end-of-data reply (``SMTP_DATA_TIMEOUT``,
10 minutes, as RFC 5321 section 4.5.3.2 asks). ``BackendTransport`` runs any other Django
email backend (anymail's providers, the console, the test outbox) in a pool of threads.
Neither holds a database connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import aiosmtplib
import requests
from anymail.exceptions import (
    AnymailAPIError,
    AnymailInvalidAddress,
    AnymailRecipientsRefused,
    AnymailUnsupportedFeature,
)
from django.conf import settings
from django.core import mail
from django.core.mail.utils import DNS_NAME
from urllib3.exceptions import NewConnectionError

from notifications import suppressions
from notifications.mime import PreparedEmail

ResultKind = Literal["sent", "retry", "failed", "unknown"]
SMTP_BACKENDS = frozenset({"notifications.mime.SMTPBackend", "django.core.mail.backends.smtp.EmailBackend"})
# A connection idle for longer than this is closed rather than trusted: servers drop idle sessions.
KEEP_OPEN_SECONDS = 15.0
_LEADING_DOT = re.compile(rb"(?m)^\.")


@dataclass(frozen=True)
class SendResult:
    kind: ResultKind
    reason: str = ""
    message_id: str | None = None  # the provider's id for a sent message (SMTP: none but ours)
    address_gone: bool = False  # a permanent refusal saying the address does not exist


def _reply(code: int, text: str) -> str:
    return f"SMTP {code} {text}".strip()[:500]


def smtp_refusal(code: int, text: str, *, stage: str) -> SendResult:
    """A 4xx or 5xx reply before the server took the message: retried, or failed for good (pure)."""
    reason = _reply(code, text) if stage != "recipient" else f"SMTP recipient refused: {code} {text}"[:500]
    if 500 <= code < 600:
        gone = stage in ("recipient", "data") and suppressions.smtp_reply_says_address_gone(code=code, text=text)
        return SendResult("failed", reason, address_gone=gone)
    return SendResult("retry", reason)


def provider_failure_classify(exc: BaseException) -> SendResult:
    """What an error from a Django email backend means for the message (pure).

    A provider's HTTP request that went out and got no answer (a read timeout, a dropped
    connection) is ``unknown``; one that never went out (refused, unresolvable, a TLS
    handshake, a connect timeout) is ``retry``. SMTP errors of Django's SMTP backend are
    read as the SMTP transport reads them. The reason never holds the message or secrets.
    """
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        results = [smtp_refusal(code, _text(text), stage="recipient") for code, text in exc.recipients.values()]
        return next((result for result in results if result.kind == "failed"), results[0] if results else
                    SendResult("retry", "SMTP recipients refused"))  # fmt: skip
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        # A configuration problem, not this email's: retried, so that fixing the credentials
        # within the backoff lets the queue drain.
        return SendResult("retry", f"SMTP authentication failed: {exc.smtp_code} {_text(exc.smtp_error)}"[:500])
    if isinstance(exc, smtplib.SMTPResponseException):
        return smtp_refusal(exc.smtp_code, _text(exc.smtp_error), stage="data")
    if isinstance(exc, AnymailRecipientsRefused):
        return SendResult("failed", "the provider refused the recipient (invalid, bounced before or suppressed)")
    if isinstance(exc, AnymailInvalidAddress | AnymailUnsupportedFeature):
        return SendResult("failed", f"{type(exc).__name__}: {exc.args[0] if exc.args else ''}"[:500])
    if isinstance(exc, requests.RequestException) and getattr(exc, "status_code", None) is None:
        return _request_failure(exc)  # no answer at all: did the request go out?
    if isinstance(exc, AnymailAPIError) and _boto_classes(exc.__cause__):
        return _boto_failure(exc.__cause__)  # type: ignore[arg-type]
    if isinstance(exc, AnymailAPIError):
        status = exc.status_code
        text = getattr(exc.response, "text", "") or ""
        reason = f"{exc.esp_name or 'provider'} API {status or 'request failed'}" + (f": {text[:300]}" if text else "")
        if status is None:
            return SendResult("retry", reason)
        permanent = 400 <= status < 500 and status != 429
        return SendResult("failed" if permanent else "retry", reason)
    return SendResult("retry", f"{type(exc).__name__}: {exc}"[:500])


def _request_failure(exc: requests.RequestException) -> SendResult:
    # anymail raises its own error, of the requests error's type too, from the requests error.
    cause = exc.__cause__ if isinstance(exc.__cause__, requests.RequestException) else exc
    name = type(cause).__name__
    reason = f"provider request failed ({name})"
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.InvalidURL):
        return SendResult("retry", reason)
    if isinstance(exc, requests.exceptions.SSLError):
        # urllib3 names a TLS error SSLError whether it came in the handshake (nothing went
        # out) or while the answer was read (the request had gone).
        if _tls_refused_before_sending(cause):
            return SendResult("retry", reason)
        return SendResult("unknown", f"delivery unknown: the TLS connection to the provider broke after the "
                                     f"request was sent ({name}); it may have accepted the message")  # fmt: skip
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return SendResult("unknown", f"delivery unknown: the provider's answer broke off ({name}); it may have "
                                     f"accepted the message")  # fmt: skip
    if isinstance(exc, requests.ReadTimeout):
        return SendResult("unknown", f"delivery unknown: the provider did not answer in time after the request was "
                                     f"sent ({name}); it may have accepted the message")  # fmt: skip
    if isinstance(exc, requests.ConnectionError):
        pool_error = cause.args[0] if cause.args else None
        if isinstance(getattr(pool_error, "reason", pool_error), NewConnectionError):
            return SendResult("retry", reason)  # refused, unresolvable: nothing went out
        return SendResult("unknown", f"delivery unknown: the connection to the provider broke after the request was "
                                     f"sent ({name}); it may have accepted the message")  # fmt: skip
    return SendResult("retry", reason)


# What a TLS error says when the connection was refused before the request went out: the
# certificate, the handshake, the protocol version.
_TLS_BEFORE_SENDING = ("certificate", "handshake", "wrong_version_number", "unsupported protocol", "protocol version")


def _tls_refused_before_sending(exc: BaseException) -> bool:
    errors: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(errors) < 10:
        errors.append(seen)
        reason = getattr(seen, "reason", None)  # urllib3's MaxRetryError carries the error as its reason
        seen = reason if isinstance(reason, BaseException) else (seen.__cause__ or seen.__context__)
        if seen is None and errors[-1].args and isinstance(errors[-1].args[0], BaseException):
            seen = errors[-1].args[0]
    if any(isinstance(error, ssl.SSLCertVerificationError) for error in errors):
        return True
    text = " ".join(str(error) for error in errors).lower()
    return any(word in text for word in _TLS_BEFORE_SENDING)


# botocore's errors (Amazon SES, through anymail, which raises AnymailAPIError from them),
# told apart by class name: botocore is only installed with the SES extra.
_BOTO_NOT_SENT = frozenset(
    {"EndpointConnectionError", "ConnectTimeoutError", "ProxyConnectionError", "NoCredentialsError",
     "PartialCredentialsError", "NoRegionError", "CredentialRetrievalError"}
)  # fmt: skip
_BOTO_NO_ANSWER = frozenset({"ReadTimeoutError", "ConnectionClosedError", "ResponseStreamingError"})
_BOTO_THROTTLED = frozenset({"Throttling", "ThrottlingException", "TooManyRequestsException", "LimitExceededException"})


def _boto_classes(exc: BaseException | None) -> set[str]:
    if exc is None:
        return set()
    names = {klass.__name__ for klass in type(exc).__mro__}
    return names if "BotoCoreError" in names or "ClientError" in names else set()


def _boto_failure(exc: BaseException) -> SendResult:
    """An Amazon SES call's error: a refusal by its HTTP status, a request that never went out
    retried, one that went out and got no whole answer "delivery unknown"."""
    names = _boto_classes(exc)
    name = type(exc).__name__
    if "ClientError" in names:
        response = getattr(exc, "response", None) or {}
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        code = (response.get("Error") or {}).get("Code") or ""
        reason = f"Amazon SES API {status or 'error'}: {code} {(response.get('Error') or {}).get('Message') or ''}"
        permanent = status is not None and 400 <= status < 500 and status != 429 and code not in _BOTO_THROTTLED
        return SendResult("failed" if permanent else "retry", reason.strip()[:500])
    if names & _BOTO_NO_ANSWER:
        return SendResult("unknown", f"delivery unknown: Amazon SES did not answer after the request was sent "
                                     f"({name}); it may have accepted the message")  # fmt: skip
    if "SSLError" in names and not _tls_refused_before_sending(exc):
        return SendResult("unknown", f"delivery unknown: the TLS connection to Amazon SES broke after the request "
                                     f"was sent ({name}); it may have accepted the message")  # fmt: skip
    if names & _BOTO_NOT_SENT or "SSLError" in names:
        return SendResult("retry", f"Amazon SES request failed before it was sent ({name})")
    if "ParamValidationError" in names:
        return SendResult("failed", f"Amazon SES refused the request's parameters ({name}): {exc}"[:500])
    # Anything else may have come after the request went out: not guessed by sending again.
    return SendResult("unknown", f"delivery unknown: the Amazon SES call failed ({name}: {exc}); it may have "
                                 f"accepted the message"[:500])  # fmt: skip


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def data_stuffed(message: bytes) -> bytes:
    """The message as DATA sends it: CRLF line ends, leading dots doubled, the final "." line."""
    body = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return _LEADING_DOT.sub(b"..", body) + b".\r\n"


# --- SMTP -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    use_ssl: bool = False
    use_tls: bool = False  # STARTTLS
    username: str = ""
    password: str = ""
    timeout: float = 20.0  # each command's reply (connect, EHLO, MAIL, RCPT, DATA)
    data_timeout: float = 600.0  # the reply to the end of the data
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> SmtpSettings:
        return cls(
            host=str(options.get("host") or "localhost"),
            port=int(options.get("port") or 25),
            use_ssl=bool(options.get("use_ssl")),
            use_tls=bool(options.get("use_tls")),
            username=str(options.get("username") or ""),
            password=str(options.get("password") or ""),
            timeout=float(options.get("timeout") or 20),
            data_timeout=float(settings.SMTP_DATA_TIMEOUT),
            ssl_certfile=options.get("ssl_certfile"),
            ssl_keyfile=options.get("ssl_keyfile"),
        )


@dataclass
class _Session:
    client: aiosmtplib.SMTP
    used_at: float


class SmtpTransport:
    """SMTP on asyncio: up to ``size`` sessions open at once, each carrying one message at a time."""

    name = "smtp"

    def __init__(self, config: SmtpSettings, *, size: int) -> None:
        self.config = config
        self._idle: list[_Session] = []
        self._slots = asyncio.Semaphore(max(size, 1))

    async def send(self, message: PreparedEmail, *, handover: Callable[[], None] | None = None) -> SendResult:
        """Send one message; ``handover`` is called as its data goes out (from then on, a lost
        answer makes its delivery unknown)."""
        if not (message.prepared and message.envelope):
            return SendResult("failed", "the message was not prepared")
        sender, recipients = message.envelope
        async with self._slots:
            try:
                session = await self._session()
            except aiosmtplib.SMTPAuthenticationError as exc:
                return SendResult("retry", f"SMTP authentication failed: {exc.code} {exc.message}"[:500])
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                return SendResult("retry", f"could not open an SMTP session: {type(exc).__name__}: {exc}"[:500])
            result = await self._transaction(session, sender, recipients, message.prepared, handover)
            if result.kind == "sent" or (result.kind in ("retry", "failed") and session.client.is_connected):
                session.used_at = time.monotonic()
                self._idle.append(session)
            else:
                session.client.close()
            return result

    async def _session(self) -> _Session:
        now = time.monotonic()
        # Every idle session past its time is closed, not only the one on top: the pool
        # would otherwise keep as many open as the busiest moment needed.
        keep: list[_Session] = []
        for session in self._idle:
            if session.client.is_connected and now - session.used_at <= KEEP_OPEN_SECONDS:
                keep.append(session)
            else:
                session.client.close()
        self._idle = keep
        if self._idle:
            return self._idle.pop()
        config = self.config
        client = aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            username=config.username or None,
            password=config.password or None,
            local_hostname=str(DNS_NAME),
            timeout=config.timeout,
            use_tls=config.use_ssl,
            start_tls=config.use_tls,
            client_cert=config.ssl_certfile,
            client_key=config.ssl_keyfile,
            tls_context=ssl.create_default_context() if (config.use_ssl or config.use_tls) else None,
        )
        try:
            await client.connect()
            if client.is_ehlo_or_helo_needed:
                await client.ehlo()
        except BaseException:
            client.close()
            raise
        return _Session(client=client, used_at=now)

    async def _transaction(
        self, session: _Session, sender: str, recipients: list[str], prepared: bytes,
        handover: Callable[[], None] | None,
    ) -> SendResult:  # fmt: skip
        client, timeout = session.client, self.config.timeout
        try:
            # The envelope was checked when the message was built (ASCII, one address each):
            # the commands are written as they are.
            reply = await client.execute_command(b"MAIL", b"FROM:<" + sender.encode() + b">", timeout=timeout)
            if reply.code != 250:
                return await self._refused(client, reply.code, reply.message, stage="sender")
            for recipient in recipients:
                reply = await client.execute_command(b"RCPT", b"TO:<" + recipient.encode() + b">", timeout=timeout)
                if reply.code not in (250, 251):
                    return await self._refused(client, reply.code, reply.message, stage="recipient")
            reply = await client.execute_command(b"DATA", timeout=timeout)
            if reply.code != 354:
                return await self._refused(client, reply.code, reply.message, stage="data")
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # Nothing of the message went out: safe to send again.
            return SendResult("retry", f"SMTP session failed before the message was sent: {type(exc).__name__}: "
                                       f"{exc}"[:500])  # fmt: skip
        # From here the message is the server's: a missing answer is not a refusal.
        protocol = client.protocol
        try:
            if protocol is None:
                raise aiosmtplib.SMTPServerDisconnected("Connection lost")
            if handover is not None:
                handover()
            protocol.write(data_stuffed(prepared))
            reply = await protocol.read_response(timeout=self.config.data_timeout)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            client.close()
            waited = f"{self.config.data_timeout:g} s" if isinstance(exc, TimeoutError) else "the reply"
            return SendResult(
                "unknown",
                f"delivery unknown: the message was sent but the server gave no reply to its end ({type(exc).__name__}"
                f", waited {waited}); it may have been accepted",
            )
        if reply.code == 250:
            return SendResult("sent", _reply(reply.code, reply.message))
        return smtp_refusal(reply.code, reply.message, stage="data")

    async def _refused(self, client: aiosmtplib.SMTP, code: int, text: str, *, stage: str) -> SendResult:
        # The session goes back to the pool only if the server says it is reset: one left
        # mid-transaction would refuse the next email's MAIL, perhaps another firm's.
        reset = None
        with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
            reset = await client.execute_command(b"RSET", timeout=self.config.timeout)
        if reset is None or reset.code != 250:
            client.close()
        return smtp_refusal(code, text, stage=stage)

    async def close(self) -> None:
        while self._idle:
            session = self._idle.pop()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await session.client.quit()
            session.client.close()


# --- Any other Django email backend -----------------------------------------------------------


class BackendTransport:
    """A Django email backend (a provider, the console) in a pool of threads, one open
    connection per thread; what goes wrong is read by ``provider_failure_classify``."""

    def __init__(self, alias: str, *, size: int) -> None:
        self.alias = alias
        self.name = str(settings.MAILERS.get(alias, {}).get("BACKEND", alias)).rsplit(".", 1)[-1]
        self._executor = ThreadPoolExecutor(max_workers=max(1, min(size, 200)), thread_name_prefix="mail")
        self._local = threading.local()
        self._opened: list[Any] = []
        self._lock = threading.Lock()

    def _backend(self) -> Any:
        held = getattr(self._local, "held", None)
        if held is not None and time.monotonic() - held[1] <= KEEP_OPEN_SECONDS:
            return held[0]
        if held is not None:
            with contextlib.suppress(Exception):
                held[0].close()
        backend = mail.mailers[self.alias]
        backend.open()
        self._local.held = (backend, time.monotonic())
        with self._lock:
            self._opened.append(backend)
        return backend

    def _send_sync(self, message: PreparedEmail) -> SendResult:
        try:
            backend = self._backend()
            sent = backend.send_messages([message])
        except Exception as exc:
            held = getattr(self._local, "held", None)
            self._local.held = None
            if held is not None:
                with contextlib.suppress(Exception):
                    held[0].close()
            return provider_failure_classify(exc)
        self._local.held = (backend, time.monotonic())
        if not sent:
            return SendResult("retry", "the mail backend reported 0 messages sent")
        return SendResult("sent", "", message_id=_provider_id(message))

    async def send(self, message: PreparedEmail, *, handover: Callable[[], None] | None = None) -> SendResult:
        # A provider's request cannot be watched going out from here: counted as handed over.
        if handover is not None:
            handover()
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._send_sync, message)

    async def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for backend in opened:
            with contextlib.suppress(Exception):
                backend.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _provider_id(message: PreparedEmail) -> str | None:
    """The provider's id of a sent message (anymail's status: one id, or one per recipient)."""
    status = getattr(message, "anymail_status", None)
    found = getattr(status, "message_id", None)
    if isinstance(found, set):
        found = ", ".join(sorted(str(one) for one in found if one is not None)) or None
    return str(found) if found is not None else None


Transport = SmtpTransport | BackendTransport


def transport_for(alias: str = "default", *, size: int) -> Transport:
    """The transport of the ``alias`` mailer (settings.MAILERS): SMTP spoken here, or its backend in threads."""
    config: dict[str, Any] = settings.MAILERS.get(alias, {})
    if config.get("BACKEND") in SMTP_BACKENDS:
        return SmtpTransport(SmtpSettings.from_options(dict(config.get("OPTIONS", {}))), size=size)
    return BackendTransport(alias, size=size)
