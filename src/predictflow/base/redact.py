"""Credentials out of what the user sees.

Error lines and reports quote URIs (`tracking server http://... does not answer`), and a
tracking URI may carry a password (`http://user:pass@host`, `postgresql://u:p@h/db`). Rather
than trusting every message to spell its URI carefully, the CLI passes all text it prints
through `redact`: the password part of any URI becomes `***`, and so does the value of any
secret the environment holds (MLFLOW_TRACKING_PASSWORD, the passwords inside the environment's
URIs, ...), wherever it appears.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote, urlsplit

MASK = "***"
# Variables whose whole value is a secret, by name; the rest of the environment is only
# searched for URIs with a password in them.
SECRET_NAMES = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|_KEY)$|^PGPASS")
# Shorter values would mask ordinary words and digits all over a message ("1", "abc").
MIN_SECRET = 4
# scheme://user:password@ - up to the last `@` before the host ends (an unescaped `@` may sit
# in a password; `/`, whitespace and quotes end the authority).
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^/\s'\"<>?#]*)@")


def _mask_userinfo(match: re.Match[str]) -> str:
    user, colon, _password = match["info"].partition(":")
    return f"{match['scheme']}{user}:{MASK}@" if colon else match[0]


def uri_password(value: str) -> str | None:
    """The password in a URI, if it has one."""
    match = _USERINFO.search(value)
    if not match or ":" not in match["info"]:
        return None
    try:
        return urlsplit(match[0] + "host").password or None
    except ValueError:  # a malformed port or host: take the text after the first colon
        return match["info"].partition(":")[2] or None


def secrets_in(env: Mapping[str, str]) -> set[str]:
    """Every secret value the environment holds, as given and percent-decoded."""
    found: set[str] = set()
    for name, value in env.items():
        candidates = [value] if SECRET_NAMES.search(name.upper()) else []
        candidates.append(uri_password(value) or "")
        for secret in candidates:
            found.update(s for s in (secret, unquote(secret)) if len(s) >= MIN_SECRET)
    return found


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """`text` with URI passwords and known secret values replaced by `***`.

    `secrets` defaults to those of this process's environment, read at the call (a command may
    have loaded `.env` or been given credentials after start-up).
    """
    text = _USERINFO.sub(_mask_userinfo, text)
    known = secrets_in(os.environ) if secrets is None else set(secrets)
    for secret in sorted(known, key=len, reverse=True):  # a longer secret may hold a shorter
        text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Masks a log record's text the way `redact` masks printed text: warnings from MLflow
    or urllib3 quote URLs too."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed call: logging reports it as it would
            return True
        record.msg, record.args = redact(message), ()
        return True


def mask_logs() -> None:
    """Every handler the root logger has (the CLI's stderr handler) masks what it writes."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
