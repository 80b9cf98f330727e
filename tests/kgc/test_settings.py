"""Settings come from the environment; a bad one stops start-up with one line naming it."""

from __future__ import annotations

import secrets
import subprocess
import sys

import pytest

from kgc.config import (
    ConfigError,
    Env,
    database_from_url,
    origins_parse,
    proxy_ssl_header_parse,
    route_problem,
    sender_address,
)
from tests.helpers import ROOT, manage, subprocess_env


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"DEBUG": "false", "SECRET_KEY": None}, "SECRET_KEY"),
        ({"DATABASE_URL": "mysql://root@localhost/kgc"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://postgres@127.0.0.1:port/kgc"}, "DATABASE_URL"),
        ({"SMTP_HOST": "smtp.example.com", "SMTP_PORT": "five"}, "SMTP_PORT"),
        ({"SMTP_HOST": "smtp.example.com", "SMTP_SECURE": "maybe"}, "SMTP_SECURE"),
        ({"DEBUG": "yes please"}, "DEBUG"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"KGC_HEARTBEAT_INTERVAL": "soon"}, "KGC_HEARTBEAT_INTERVAL"),
        ({"KGC_WORKER_DEAD_AFTER": "-1"}, "KGC_WORKER_DEAD_AFTER"),
        ({"KGC_PUBLIC_URL": "jobs.example.com"}, "KGC_PUBLIC_URL"),
        ({"KGC_DIGEST_HOUR": "24"}, "KGC_DIGEST_HOUR"),
        ({"KGC_APP_URL": "app.example.com"}, "KGC_APP_URL"),
        ({"EMAIL_FROM": "KGC Compliance"}, "EMAIL_FROM"),
        ({"KGC_APP_FILING_ROUTE": "/filings/{id}"}, "KGC_APP_FILING_ROUTE"),
        ({"KGC_ESCALATION_EVERY_DAYS": "0"}, "KGC_ESCALATION_EVERY_DAYS"),
        ({"KGC_UNKNOWN_TASK_GRACE": "-5"}, "KGC_UNKNOWN_TASK_GRACE"),
        # Outside DEBUG each process would otherwise start a private, empty PostgreSQL.
        ({"DEBUG": "false", "SECRET_KEY": "k" * 60, "DATABASE_URL": None}, "DATABASE_URL"),
    ],
)
def test_bad_variable_stops_startup_with_one_line_naming_it(db, overrides, variable):
    result = manage("check", env=subprocess_env(**overrides))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"kgc: configuration error: {variable}:")


def test_a_checkout_marked_by_make_run_runs_commands_as_make_run_does(db, tmp_path):
    """A second terminal: no DEBUG and no SECRET_KEY in its environment."""
    from kgc.dev import dev_checkout_mark

    env = subprocess_env(DEBUG=None, SECRET_KEY=None, KGC_DATA_DIR=str(tmp_path))
    refused = manage("check", env=env)
    assert refused.returncode == 2 and "SECRET_KEY: is required when DEBUG is off" in refused.stderr
    dev_checkout_mark(store=tmp_path)
    result = manage("check", env=env)
    assert result.returncode == 0, result.stderr
    assert manage("check", env={**env, "DEBUG": "false"}).returncode == 2  # DEBUG set in the environment wins


@pytest.mark.parametrize("ignore_file", [".dockerignore", ".gitignore"])
def test_the_development_mark_never_reaches_an_image_or_a_deploy(ignore_file):
    """The mark lives in .kgc, which neither the Docker build context nor git carries."""
    assert any(line.strip().rstrip("/") == ".kgc" for line in (ROOT / ignore_file).read_text().splitlines())


def test_redis_url_is_ignored_with_a_one_line_warning(db):
    result = manage("check", env=subprocess_env(REDIS_URL="redis://localhost:6379"))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "REDIS_URL" in line]
    assert warnings == ["kgc: REDIS_URL is set but ignored: Redis is no longer used, jobs live in PostgreSQL"]


def test_secret_key_is_taken_from_the_environment_when_debug_is_off(db):
    result = manage(
        "check", "--deploy", "--fail-level", "CRITICAL", env=subprocess_env(DEBUG="false", SECRET_KEY="k" * 60)
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://kgc:s%40cret@db.internal:5433/kgc",
            {"HOST": "db.internal", "PORT": "5433", "USER": "kgc", "PASSWORD": "s@cret", "NAME": "kgc"},
        ),
        ("postgres://postgres@/kgc?host=/run/pg", {"HOST": "/run/pg", "PORT": "", "NAME": "kgc"}),
        ("postgresql://u@h/kgc?sslmode=require", {"OPTIONS": {"sslmode": "require"}}),
    ],
)
def test_database_url_is_parsed(url, expected):
    parsed = database_from_url(url)
    assert {key: parsed[key] for key in expected} == expected


@pytest.mark.parametrize(
    ("method", "raw", "args"),
    [("bool", "sometimes", (False,)), ("int", "12x", (1,)), ("choice", "loud", ("info", ("info", "debug")))],
)
def test_malformed_values_name_the_variable(method, raw, args):
    with pytest.raises(ConfigError, match="^SOME_VAR: "):
        getattr(Env({"SOME_VAR": raw}), method)("SOME_VAR", *args)


def test_missing_required_variable_names_it():
    with pytest.raises(ConfigError, match="^EMAIL_FROM: is required"):
        Env({}).str("EMAIL_FROM")


def test_fault_timings_that_would_declare_live_workers_dead_fail_the_system_check(db):
    result = manage("check", env=subprocess_env(KGC_HEARTBEAT_INTERVAL="5", KGC_WORKER_DEAD_AFTER="8"))
    assert result.returncode != 0
    assert "kgc.E002" in result.stderr and "KGC_WORKER_DEAD_AFTER (8 s) must be at least 3" in result.stderr


def test_a_bad_concurrency_override_fails_the_system_check(db):
    result = manage("check", env=subprocess_env(KGC_CONCURRENCY="email=lots"))
    assert result.returncode != 0
    assert "kgc.E003" in result.stderr and "concurrency for 'email' must be a whole number" in result.stderr


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://jobs.example.com/", "https://jobs.example.com"),
        ("http://127.0.0.1:8000/kgc", "http://127.0.0.1:8000/kgc"),
    ],
)
def test_a_url_is_read_without_its_trailing_slash(raw, expected):
    assert Env({"SOME_URL": raw}).url("SOME_URL") == expected


@pytest.mark.parametrize("raw", ["jobs.example.com", "ftp://jobs.example.com", "https://", "https://x.com/?a=1"])
def test_a_malformed_url_names_the_variable(raw):
    with pytest.raises(ConfigError, match="^SOME_URL: expected an http"):
        Env({"SOME_URL": raw}).url("SOME_URL")


# --- Behind a TLS-terminating proxy ----------------------------------------------------------

PROXY_HOST = "console.example.com"
LOGIN_BEHIND_PROXY = """
import django
django.setup()
from django.test import Client

proxy = {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_HOST": "console.example.com"}
browser = Client(enforce_csrf_checks=True)
browser.get("/admin/login/", **proxy)
response = browser.post(
    "/admin/login/?next=/admin/",
    {"username": "ops", "password": "a proxy-test password", "next": "/admin/",
     "csrfmiddlewaretoken": browser.cookies["csrftoken"].value},
    HTTP_ORIGIN="https://console.example.com",
    HTTP_REFERER="https://console.example.com/admin/login/",
    **proxy,
)
print(response.status_code, response.get("Location", ""))
"""


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("X-Forwarded-Proto", ("HTTP_X_FORWARDED_PROTO", "https")),
        ("X-Forwarded-Ssl=on", ("HTTP_X_FORWARDED_SSL", "on")),
    ],
)
def test_proxy_ssl_header_is_read_as_djangos_pair(raw, expected):
    assert proxy_ssl_header_parse(raw) == expected


@pytest.mark.parametrize(
    ("parse", "raw", "variable"),
    [
        (proxy_ssl_header_parse, "X Forwarded Proto", "SECURE_PROXY_SSL_HEADER"),
        (origins_parse, ["console.example.com"], "CSRF_TRUSTED_ORIGINS"),
        (origins_parse, ["https://console.example.com/admin/"], "CSRF_TRUSTED_ORIGINS"),
    ],
)
def test_malformed_proxy_settings_are_refused_naming_the_variable(parse, raw, variable):
    with pytest.raises(ConfigError, match=f"^{variable}: expected"):
        parse(raw)


def _login_behind_proxy(**env: str) -> str:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("ops", password="a proxy-test password", is_staff=True)
    assert user.pk
    production = {"DEBUG": "false", "SECRET_KEY": "s" * 60, "ALLOWED_HOSTS": PROXY_HOST, **env}
    result = subprocess.run(
        [sys.executable, "-c", LOGIN_BEHIND_PROXY],
        cwd=ROOT,
        env=subprocess_env(DJANGO_SETTINGS_MODULE="kgc.settings", **production),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.django_db(transaction=True)
def test_admin_login_behind_a_tls_proxy_fails_the_origin_check_without_proxy_settings():
    assert _login_behind_proxy() == "403"


@pytest.mark.django_db(transaction=True)
def test_admin_login_behind_a_tls_proxy_succeeds_when_its_header_is_trusted():
    assert _login_behind_proxy(SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto") == "302 /admin/"


@pytest.mark.django_db(transaction=True)
def test_admin_login_behind_a_tls_proxy_succeeds_with_the_origin_trusted():
    assert _login_behind_proxy(CSRF_TRUSTED_ORIGINS=f"https://{PROXY_HOST}") == "302 /admin/"


def readme_production_env() -> dict[str, str]:
    """The production environment the README documents (the block after its marker)."""
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- production-env -->", 1)[1].split("```", 2)[1]
    pairs = (line.split("=", 1) for line in block.splitlines()[1:] if line and not line.startswith("#"))
    return {name: value for name, value in pairs}


def test_check_deploy_is_clean_with_the_production_environment_of_the_readme(db):
    env = readme_production_env()
    env["SECRET_KEY"] = secrets.token_urlsafe(50)  # the README's placeholder
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=subprocess_env(**env))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("/clients/{client_id}/filings/{filing_id}", None),
        ("/app/t/{tenant_id}/filings/{filing_id}?tab=tasks", None),
        ("filings/{filing_id}", "expected a path starting with /"),
        ("//evil.example.com/{filing_id}", "expected a path starting with /"),
        ("/filings/{filingId}", "may name only {filing_id}, {client_id}, {tenant_id}, got {filingId}"),
        ("/filings/{filing_id!r}", "may name only"),
        ("/filings/{filing_id", "is not a valid template"),
    ],
)
def test_route_templates_name_only_the_ids_they_may_use(template, problem):
    found = route_problem(template, ("filing_id", "client_id", "tenant_id"))
    assert (found is None) if problem is None else (problem in (found or ""))


@pytest.mark.parametrize(("reminder", "digest", "warned"), [(8, 9, False), (8, 8, True), (10, 9, True), (0, 23, False)])
def test_a_digest_hour_not_after_the_reminder_hour_is_warned_about(settings, reminder, digest, warned):
    from notifications.apps import check_local_hours

    settings.KGC_REMINDER_HOUR, settings.KGC_DIGEST_HOUR = reminder, digest
    assert [message.id for message in check_local_hours()] == (["notifications.W001"] if warned else [])


@pytest.mark.parametrize(
    ("raw", "name", "expected"),
    [
        ("noreply@kgc-compliance.com", "KGC Compliance Cloud", "KGC Compliance Cloud <noreply@kgc-compliance.com>"),
        ("Kestrel Tax <noreply@kestrel.example>", "KGC Compliance Cloud", "Kestrel Tax <noreply@kestrel.example>"),
        ("noreply@kgc-compliance.com", "", "noreply@kgc-compliance.com"),
        ("noreply@kgc-compliance.com", "Smith, Jones & Co.", '"Smith, Jones & Co." <noreply@kgc-compliance.com>'),
        ("noreply@kgc-compliance.com", "Müller Steuerberatung", "Müller Steuerberatung <noreply@kgc-compliance.com>"),
    ],
)
def test_the_sender_has_a_display_name(raw, name, expected):
    assert sender_address(raw, name=name) == expected


def test_the_default_sender_names_the_product(settings):
    from kgc import settings as project_settings

    assert project_settings.DEFAULT_FROM_EMAIL == "KGC Compliance Cloud <noreply@kgc-compliance.com>"
