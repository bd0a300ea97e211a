"""Secrets never leave the process: what humpback writes, logs or publishes is redacted here.

A key belongs in an environment variable (``api_key_env`` names it). Users still paste one where
it does not belong: credentials inside a server URL (``https://user:pass@host/v1?api_key=...``),
the key itself where the variable's name goes. URLs are stored and shown with their user info
and key-like query values replaced by ``***``; a value that looks like a key where a name is
expected is refused without being echoed; every log line and error message passes ``redact``.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"

# Query parameters that carry credentials (matched without case, ignoring - and _).
_KEY_PARAMS = {
    "apikey",
    "key",
    "token",
    "accesstoken",
    "authtoken",
    "secret",
    "password",
    "pass",
    "pwd",
    "sig",
    "signature",
    "auth",
    "xapikey",
    "clientsecret",
    "code",
}
# Shapes of keys that providers hand out: OpenAI/Anthropic sk-, Hugging Face hf_, GitHub, Slack, AWS.
_KEY_SHAPES = re.compile(
    r"\b(?:sk-[A-Za-z0-9_-]{6,}|sk_(?:live|test)_[A-Za-z0-9]{6,}|hf_[A-Za-z0-9]{10,}|"
    r"gh[pousr]_[A-Za-z0-9]{10,}|xox[abpr]-[A-Za-z0-9-]{10,}|AKIA[A-Z0-9]{12,})"
)
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")
_KEY_ASSIGNMENT = re.compile(
    r"(?i)((?:api[_-]?key|access[_-]?token|password|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,}]+"
)
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+")


def redact_url(url: str) -> str:
    """The URL with its user:password and key-like query values replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _KEY_SHAPES.sub(MASK, url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [
                (k, MASK if k.lower().replace("-", "").replace("_", "") in _KEY_PARAMS or looks_like_key(v) else v)
                for k, v in pairs
            ],
            safe="*",
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Text with every URL's credentials, key-shaped token, bearer token, ``api_key=...`` value
    and each of ``secrets`` replaced by ***."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    text = _KEY_SHAPES.sub(MASK, text)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    return _KEY_ASSIGNMENT.sub(lambda m: m.group(1) + MASK, text)


def looks_like_key(value: str) -> bool:
    """A value shaped like a credential: a provider's key prefix, or a long run of letters and
    digits mixed (no environment variable name looks like that)."""
    if not isinstance(value, str) or not value:
        return False
    if _KEY_SHAPES.search(value):
        return True
    return (
        len(value) >= 24
        and bool(re.fullmatch(r"[A-Za-z0-9_\-.=+/]+", value))
        and bool(re.search(r"[a-z]", value))
        and bool(re.search(r"[0-9]", value))
        and not value.isupper()
    )


def redact_config(value: object) -> object:
    """A config (as nested dicts and lists) with every string redacted."""
    if isinstance(value, dict):
        return {k: redact_config(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_config(v) for v in value]
    return redact(value) if isinstance(value, str) else value


class RedactingFilter(logging.Filter):
    """On a log handler: every line it writes is redacted and kept to one line (a newline in a
    file name or a server's message cannot forge a second log line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from .files import safe_name

        message = record.getMessage()
        record.msg, record.args = safe_name(redact(message)), None
        return True
