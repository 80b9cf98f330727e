"""Reading the environment: every setting comes from here, and a bad one stops start-up.

Each reader raises ``ConfigError`` with one line that names the variable, so an
operator sees ``DATABASE_URL: ...`` rather than a traceback from deep inside Django.
"""

from __future__ import annotations

import builtins
import os
import string
import sys
from collections.abc import Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})
POSTGRES_SCHEMES = frozenset({"postgres", "postgresql", "pgsql"})


class ConfigError(ImproperlyConfigured, ValueError):
    """A required environment variable is missing or malformed."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {problem}")


class Env:
    """Typed access to a mapping of environment variables."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    def is_set(self, name: builtins.str) -> builtins.bool:
        return bool(self.environ.get(name, "").strip())

    def str(self, name: builtins.str, default: builtins.str | None = None) -> builtins.str:
        value = self.environ.get(name, "").strip()
        if value:
            return value
        if default is None:
            raise ConfigError(name, "is required and not set")
        return default

    def bool(self, name: builtins.str, default: builtins.bool) -> builtins.bool:
        raw = self.environ.get(name)
        if raw is None:
            return default
        word = raw.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ConfigError(name, f"expected true or false, got {raw!r}")

    def int(
        self,
        name: builtins.str,
        default: builtins.int,
        *,
        minimum: builtins.int = 0,
        maximum: builtins.int | None = None,
    ) -> builtins.int:
        raw = self.environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(name, f"expected a whole number, got {raw!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
            raise ConfigError(name, f"must be {bound}, got {value}")
        return value

    def float(
        self,
        name: builtins.str,
        default: builtins.float,
        *,
        minimum: builtins.float = 0.0,
        maximum: builtins.float | None = None,
    ) -> builtins.float:
        raw = self.environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(name, f"expected a number of seconds, got {raw!r}") from None
        if not value >= minimum or (maximum is not None and value > maximum):
            bound = f"from {minimum:g} to {maximum:g}" if maximum is not None else f"at least {minimum:g}"
            raise ConfigError(name, f"must be {bound}, got {raw}")
        return value

    def list(self, name: builtins.str, default: builtins.list[builtins.str]) -> builtins.list[builtins.str]:
        raw = self.environ.get(name, "").strip()
        if not raw:
            return default
        return [item.strip() for item in raw.split(",") if item.strip()]

    def url(self, name: builtins.str, default: builtins.str = "") -> builtins.str:
        """An absolute http(s) URL without a trailing slash, or ``default`` when unset."""
        raw = self.environ.get(name, "").strip()
        if not raw:
            return default
        try:
            parts = urlsplit(raw)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise ConfigError(name, f"expected an http:// or https:// URL (https://jobs.example.com), got {raw!r}")
        return raw.rstrip("/")

    def route(self, name: builtins.str, default: builtins.str, placeholders: tuple[builtins.str, ...]) -> builtins.str:
        """A path template of the web app, such as ``/clients/{client_id}/documents/{document_id}``.

        It starts with ``/`` and names only ``placeholders`` (each as a plain ``{name}``).
        """
        value = self.environ.get(name, "").strip() or default
        problem = route_problem(value, placeholders)
        if problem:
            raise ConfigError(name, problem)
        return value

    def choice(self, name: builtins.str, default: builtins.str, choices: tuple[builtins.str, ...]) -> builtins.str:
        value = self.environ.get(name, "").strip() or default
        if value.lower() not in choices:
            raise ConfigError(name, f"expected one of {', '.join(choices)}, got {value!r}")
        return value.lower()


def route_problem(template: str, placeholders: tuple[str, ...]) -> str | None:
    """What is wrong with a route template (``/filings/{filing_id}``), or None."""
    example = "/".join(f"{{{name}}}" for name in placeholders[:1])
    if not template.startswith("/") or template.startswith("//") or any(c.isspace() for c in template):
        return f"expected a path starting with / such as /{example.strip('/')}, got {template!r}"
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"is not a valid template ({exc}): {template!r}"
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in placeholders or spec or conversion:
            return f"may name only {', '.join('{' + p + '}' for p in placeholders)}, got {{{field}}} in {template!r}"
    return None


def database_from_url(url: str, *, variable: str = "DATABASE_URL") -> dict[str, object]:
    """Turn a ``postgresql://user:pass@host:port/name?opt=val`` URL into Django's DATABASES entry.

    A socket directory may be given as ``?host=/path`` (the embedded server's form).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(variable, f"is not a valid URL ({exc})") from None
    if parts.scheme not in POSTGRES_SCHEMES:
        raise ConfigError(variable, f"must be a postgresql:// URL, got scheme {parts.scheme!r}")
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ConfigError(variable, "has no database name (postgresql://user@host:5432/NAME)")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    host = query.pop("host", None) or unquote(parts.hostname or "")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(query.pop("port", None) or port or ""),
        "OPTIONS": query,
    }


def proxy_ssl_header_parse(raw: str, *, variable: str = "SECURE_PROXY_SSL_HEADER") -> tuple[str, str]:
    """``X-Forwarded-Proto`` (value ``https``) or ``X-Forwarded-Proto=https`` → Django's
    ``("HTTP_X_FORWARDED_PROTO", "https")``."""
    name, _, value = raw.partition("=")
    name, value = name.strip(), value.strip() or "https"
    if not name or not all(char.isalnum() or char == "-" for char in name):
        raise ConfigError(variable, f"expected a header name such as X-Forwarded-Proto, got {raw!r}")
    return "HTTP_" + name.upper().replace("-", "_"), value


def origins_parse(origins: list[str], *, variable: str = "CSRF_TRUSTED_ORIGINS") -> list[str]:
    """Each origin as ``https://host[:port]`` (a scheme and a host, nothing after them)."""
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise ConfigError(variable, f"expected origins such as https://console.example.com, got {origin!r}")
    return [origin.rstrip("/") for origin in origins]


_SPECIALS = frozenset('()<>[]:;@\\,."')


def sender_address(raw: str, *, name: str, variable: str = "EMAIL_FROM") -> str:
    """The From of every email: ``raw`` as it is when it names its sender (``Name <addr>``), else
    ``name <addr>`` (``name`` empty: the bare address). Refuses a value that is no address."""
    from email.utils import parseaddr

    own_name, address = parseaddr(raw.strip())
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise ConfigError(variable, f"expected an address such as noreply@example.com, got {raw!r}")
    shown = own_name or name.strip()
    if not shown:
        return address
    if any(char in _SPECIALS for char in shown):
        shown = '"' + shown.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{shown} <{address}>"


def warn_once(message: str) -> None:
    """One line on standard error, before logging is configured."""
    sys.stderr.write(f"kgc: {message}\n")


TRACE_EXPORTERS = ("otlp", "console")
OTLP_PROTOCOLS = ("http/protobuf", "grpc")


def trace_exporters_parse(env: Env) -> tuple[str, ...]:
    """The span exporters the standard ``OTEL_*`` variables ask for; none: tracing stays off.

    ``OTEL_SDK_DISABLED=true`` keeps it off. ``OTEL_TRACES_EXPORTER`` names them (``otlp``,
    ``console``; ``none``: off); unset, an OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) means ``otlp``, and nothing at all means off.
    """
    if env.bool("OTEL_SDK_DISABLED", default=False):
        return ()
    names = [name.lower() for name in env.list("OTEL_TRACES_EXPORTER", default=[])]
    if not names:
        endpoint = env.is_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.is_set("OTEL_EXPORTER_OTLP_ENDPOINT")
        return ("otlp",) if endpoint else ()
    for name in names:
        if name not in (*TRACE_EXPORTERS, "none"):
            raise ConfigError("OTEL_TRACES_EXPORTER", f"unknown exporter {name!r}: expected otlp, console or none")
    if "none" in names and len(names) > 1:
        raise ConfigError("OTEL_TRACES_EXPORTER", "none cannot be combined with an exporter")
    return tuple(dict.fromkeys(name for name in names if name != "none"))


def otlp_protocol_parse(env: Env) -> str:
    """The OTLP exporter's protocol: ``http/protobuf`` (the default) or ``grpc``."""
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        raw = env.environ.get(name, "").strip()
        if raw:
            if raw.lower() not in OTLP_PROTOCOLS:
                raise ConfigError(name, f"expected http/protobuf or grpc, got {raw!r}")
            return raw.lower()
    return "http/protobuf"
