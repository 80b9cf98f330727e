"""The development set-up that ``make run`` prints: the admin user, an API token, the banner.

The credentials are kept in ``$KGC_DATA_DIR/dev-credentials.json`` (readable by its
owner only) so that the banner can be shown again on request and the password stays
the same from one run to the next. None of this runs without ``DEBUG``.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from django.contrib.auth import get_user_model

CREDENTIALS_FILE = "dev-credentials.json"
DEFAULT_URL = "http://127.0.0.1:8000"


class DevCredentialsMissing(LookupError, ValueError):
    """``ensure_admin`` has not been run in this data directory yet."""


@dataclass(frozen=True)
class DevCredentials:
    username: str
    password: str
    api_token: str


def dev_credentials_load(*, store: Path) -> DevCredentials:
    try:
        saved = json.loads((store / CREDENTIALS_FILE).read_text())
        return DevCredentials(username=saved["username"], password=saved["password"], api_token=saved["api_token"])
    except (OSError, ValueError, KeyError, TypeError):
        raise DevCredentialsMissing(
            f"no development credentials in {store}: run `manage.py ensure_admin` first"
        ) from None


def _save(credentials: DevCredentials, *, store: Path) -> None:
    store.mkdir(parents=True, exist_ok=True)
    path = store / CREDENTIALS_FILE
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(asdict(credentials), file)


def dev_admin_ensure(*, username: str, email: str, password: str, store: Path) -> tuple[DevCredentials, str]:
    """Make sure the superuser ``username`` exists and logs in with the development password;
    return its credentials and what was done: ``created``, ``reset`` or ``kept``.

    The password is ``password`` (``KGC_ADMIN_PASSWORD``) when given, else the one saved by
    the previous run if it still logs in, else a new random one. A user that already logs in
    with it, as a superuser, is left as it is: its password hash, and so the sessions logged
    in with it, stay valid from one ``make run`` to the next. The API token is the saved one,
    or a new one. Both are saved for ``dev_credentials_load``.
    """
    try:
        saved: DevCredentials | None = dev_credentials_load(store=store)
    except DevCredentialsMissing:
        saved = None
    user, created = get_user_model().objects.get_or_create(username=username, defaults={"email": email})
    if not password:
        still_valid = saved is not None and saved.username == username and user.check_password(saved.password)
        password = saved.password if saved is not None and still_valid else secrets.token_urlsafe(12)
    changed = created or not (user.is_staff and user.is_superuser and user.is_active)
    user.is_staff = user.is_superuser = user.is_active = True
    if created or not user.check_password(password):
        user.set_password(password)  # a new salt: sessions logged in before end, as they should
        changed = True
    if changed:
        user.save()
    credentials = DevCredentials(
        username=username, password=password, api_token=saved.api_token if saved else secrets.token_urlsafe(24)
    )
    _save(credentials, store=store)
    dev_checkout_mark(store=store)
    return credentials, "created" if created else "reset" if changed else "kept"


DEVELOPMENT_MARK = "development"  # read by kgc/settings.py


def dev_checkout_mark(*, store: Path) -> None:
    """Mark the checkout whose data directory is ``store`` as one for development: manage.py
    commands there default to DEBUG on, as under ``make run`` (``kgc/settings.py``)."""
    store.mkdir(parents=True, exist_ok=True)
    (store / DEVELOPMENT_MARK).write_text(
        "`make run` set this checkout up for development: manage.py commands here default to DEBUG=true.\n"
        "Delete this file, or set DEBUG=false, to run them as in production.\n"
    )


def dev_password_valid(credentials: DevCredentials) -> bool:
    """Whether the saved password still logs the admin in (it may have been changed in the admin)."""
    user = get_user_model().objects.filter(username=credentials.username).first()
    return user is not None and user.check_password(credentials.password)


def banner_render(*, url: str, credentials: DevCredentials, api_token: str, password_valid: bool = True) -> str:
    """The lines ``make run`` prints once the server answers (and ``ensure_admin --show``)."""
    base = url.rstrip("/")
    password = credentials.password if password_valid else "(changed in the admin since; ensure_admin resets it)"
    again = "" if base == DEFAULT_URL else f" --url {base}"
    lines = [
        "KGC Compliance Cloud, development set-up",
        f"  Admin      {base}/admin/",
        f"  Username   {credentials.username}",
        f"  Password   {password}",
        f"  API        {base}/api/v1/  token {api_token}",
        f'  Try it     curl -H "Authorization: Bearer {api_token}" {base}/api/v1/queues',
        f"  Again      .venv/bin/python manage.py ensure_admin --show{again}",
    ]
    rule = "=" * max(len(line) for line in lines)
    return "\n".join([rule, *lines, rule])
