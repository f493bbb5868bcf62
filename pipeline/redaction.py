"""One redaction mechanism for every sink: nothing secret is recorded or printed.

Two complementary rules, applied together by :func:`redact` (text) and :func:`redact_data`
(JSON-like structures):

* **Known values.** Every secret the process knows of is registered once
  (:func:`register_secret`): the values of ``SecretStr`` settings, passwords and tokens found in
  configured URLs, secret-looking query parameters and HTTP headers, the settings a user marks
  secret (``secret_settings``) and secret-named environment variables
  (:func:`register_settings`, :func:`register_environment`). Any occurrence of a registered value
  (raw or URL-encoded) is masked wherever it appears, even inside an error message a library
  wrote or in the tail of a password containing an unencoded ``@``.
* **Shapes.** Text that looks like a credential is masked even when its value was never
  registered (an alert built in another process, a URL taken from a server's answer): URL
  user-info (``scheme://user:***@host``, ``scheme://:***@host``, ``https://***@host`` for a bare token), query
  parameters with a secret-looking name (``?api_key=***``), ``Authorization``-style headers, and
  ``key: value`` / ``key=value`` pairs whose key names a secret.

The sinks call it: the log formatter (:class:`RedactingFormatter`), the CLI's standard streams
(:func:`install_stream_redaction`), manifests and step summaries, the recorded configuration,
MLflow tags, params and artifacts, exception messages and the DAG's chat alerts.

This module is standard library only: the Airflow image imports it without the pipeline's
dependencies. Why one module of this size: it is the one redaction mechanism (known values,
credential shapes, every sink's adapter). Splitting it would invite a second mechanism, which is
the defect it exists to prevent.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any, TextIO
from urllib.parse import quote, quote_plus, unquote, unquote_plus

MASK = "***"
# Shorter values are too likely to occur by chance ("1", "dev", "true") to mask everywhere; a
# secret that short is refused by nothing, but it is still masked where its *shape* shows it.
MIN_LENGTH = 4

# Words that make a setting, query parameter, header or environment variable name secret.
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "pass",
        "secret",
        "secrets",
        "token",
        "apikey",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "cookie",
        "signature",
        "sig",
        "fernet",
        "jwt",
        "bearer",
        "privatekey",
        "sas",
    }
)
# Adjacent pairs that do ("api key", "access key" but not "access key id").
_SECRET_PAIRS = frozenset({("api", "key"), ("access", "key"), ("private", "key"), ("session", "key")})
_NOT_SECRET_AFTER_PAIR = frozenset({"id"})
# A last word that makes the name a reference to a secret, not the secret (``token_env``: the name
# of the variable holding it; ``password_file``: where it is).
_REFERENCE_WORDS = frozenset({"env", "file", "path", "name", "id", "param", "header", "length", "ttl"})
# Values that say "nothing here" and stay readable.
_EMPTY_WORDS = frozenset({"", "none", "null", "~", "false", "true", MASK})


def _words(name: str) -> list[str]:
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name))
    return [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]


def is_reference_name(name: str) -> bool:
    """Whether ``name`` holds the *name* of where a secret is (``token_env``, ``headers_from_env``),
    not the secret: its values are references, readable, and what they point to is the secret."""
    words = _words(name)
    return len(words) > 1 and words[-1] in _REFERENCE_WORDS


def is_secret_name(name: str) -> bool:
    """Whether a setting, parameter, header or variable called ``name`` holds a secret."""
    words = _words(name)
    if len(words) > 1 and words[-1] in _REFERENCE_WORDS:
        return False
    if len(words) > 1 and "pwd" in words:  # DB_PWD, but not the shell's PWD (the current folder)
        return True
    for i, word in enumerate(words):
        if word in _SECRET_WORDS:
            return True
        if i + 1 < len(words) and (word, words[i + 1]) in _SECRET_PAIRS:
            following = words[i + 2] if i + 2 < len(words) else ""
            if following not in _NOT_SECRET_AFTER_PAIR:
                return True
    return False


class Redactor:
    """The registry of known secret values plus the shape rules."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    # -- registration ---------------------------------------------------------------------------

    def register(self, value: Any) -> None:
        if value is None:
            return
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        text = str(value)
        if len(text.strip()) < MIN_LENGTH:
            return
        forms = {text, text.strip(), quote(text, safe=""), quote_plus(text)}
        forms = {f for f in forms | {unquote(text), unquote_plus(text)} if len(f) >= MIN_LENGTH}
        with self._lock:
            if forms <= self._values:
                return
            self._values |= forms
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def forget_all(self) -> None:
        """Drop every registered value (tests)."""
        with self._lock:
            self._values.clear()
            self._pattern = None

    @property
    def known(self) -> int:
        return len(self._values)

    # -- redaction ------------------------------------------------------------------------------

    def text(self, text: str) -> str:
        if not text:
            return text
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        text = _URL_AUTHORITY.sub(_mask_userinfo, text)
        text = _QUERY_PARAM.sub(_mask_query_param, text)
        text = _AUTH_HEADER.sub(_mask_auth_header, text)
        return _KEY_VALUE.sub(_mask_key_value, text)

    def data(self, value: Any, by_key: bool = True) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            out = {}
            for key, item in value.items():
                if by_key and is_secret_name(str(key)) and _has_value(item):
                    out[key] = MASK
                else:  # below a reference (headers_from_env) the values are variable names
                    out[key] = self.data(item, by_key and not is_reference_name(str(key)))
            return out
        if isinstance(value, list | tuple):
            return type(value)(self.data(v, by_key) for v in value)
        if hasattr(value, "get_secret_value"):
            return MASK if value.get_secret_value() else value
        return value


def _has_value(item: Any) -> bool:
    if item is None or isinstance(item, bool):
        return False
    if isinstance(item, Mapping | list | tuple):
        return bool(item)
    return str(item).strip().lower() not in _EMPTY_WORDS


# scheme://authority — the authority ends at the first '/', '?', '#', whitespace or quote; its
# user-info ends at the LAST '@' in it (a password with an unencoded '@' is still masked whole).
_URL_AUTHORITY = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<authority>[^\s/?#'\"<>|\\]+)")


def _mask_userinfo(match: re.Match[str]) -> str:
    authority = match["authority"]
    userinfo, sep, host = authority.rpartition("@")
    if not sep or not userinfo:
        return match.group(0)
    user, colon, password = userinfo.partition(":")
    if colon:
        masked = f"{user}:{MASK}" if password != MASK or user else f":{MASK}"
    elif match["scheme"].lower().startswith(("http", "ws")):
        masked = MASK  # a bare token as user-info (https://TOKEN@host)
    else:
        return match.group(0)  # a user name alone (postgresql://features@db)
    return f"{match['scheme']}{masked}@{host}"


_QUERY_PARAM = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&#\s'\"<>]+)=(?P<value>[^&#\s'\"<>]*)")


def _mask_query_param(match: re.Match[str]) -> str:
    if not is_secret_name(unquote_plus(match["name"])) or not match["value"]:
        return match.group(0)
    return f"{match['lead']}{match['name']}={MASK}"


_AUTH_HEADER = re.compile(
    r"(?P<name>\b(?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?)"
    r"(?P<scheme>(?:basic|bearer|token|digest|negotiate|aws4-hmac-sha256)\s+)?"
    r"(?P<value>[^\s\"',;}]+)",
    re.IGNORECASE,
)


def _mask_auth_header(match: re.Match[str]) -> str:
    if match["value"] == MASK:
        return match.group(0)
    return f"{match['name']}{match['scheme'] or ''}{MASK}"


# ``"api_key": "x"``, ``password=x``, ``X-API-Key: x``, ``'token': 'x'`` (a repr), YAML's ``secret: x``.
_KEY_VALUE = re.compile(
    r"(?P<key>(?P<q>[\"']?)\b(?P<name>[A-Za-z][A-Za-z0-9_.-]*)(?P=q))"
    r"(?P<sep>\s*[:=]\s*)"
    r"(?P<vq>[\"']?)(?P<value>[^\s\"',;}&\])]+)"
)


def _mask_key_value(match: re.Match[str]) -> str:
    name = match["name"].rsplit(".", 1)[-1]
    value = match["value"]
    if not is_secret_name(name) or value.lower() in _EMPTY_WORDS or value.startswith("*"):
        return match.group(0)
    if name.lower().endswith("authorization"):  # "Authorization: Bearer ***": the header rule's
        return match.group(0)
    if "://" in match.group(0):  # a URL's own scheme separator, handled by the URL rule
        return match.group(0)
    return f"{match['key']}{match['sep']}{match['vq']}{MASK}"


REDACTOR = Redactor()


def redact(text: Any) -> str:
    """``text`` with every known secret and every credential-shaped part masked."""
    return REDACTOR.text(str(text))


def redact_data(value: Any) -> Any:
    """A copy of a JSON-like structure with secrets masked (secret-named keys too)."""
    return REDACTOR.data(value)


def register_secret(value: Any) -> None:
    REDACTOR.register(value)


# -- what to register ------------------------------------------------------------------------------


def secrets_in_url(url: str | None) -> list[str]:
    """The password/token of a URL's user-info and its secret-looking query parameter values."""
    if not url or not isinstance(url, str):
        return []
    found: list[str] = []
    for match in _URL_AUTHORITY.finditer(url):
        userinfo, sep, _host = match["authority"].rpartition("@")
        if sep and userinfo:
            user, colon, password = userinfo.partition(":")
            if colon:
                found.append(password)
            elif match["scheme"].lower().startswith(("http", "ws")):
                found.append(user)
    for match in _QUERY_PARAM.finditer(url):
        if is_secret_name(unquote_plus(match["name"])) and match["value"]:
            found.append(match["value"])
    return [f for f in found if f and f != MASK]


def register_url(url: str | None) -> None:
    for value in secrets_in_url(url):
        register_secret(value)
        # A client that splits the user-info at the first '@' (libpq does) shows the rest as a
        # host name in its errors: each part is a secret too.
        for part in value.split("@"):
            register_secret(part)


def register_mapping(values: Mapping[str, Any] | None) -> None:
    """Register the values of secret-named keys (headers, query parameters)."""
    for key, value in (values or {}).items():
        if is_secret_name(str(key)) and _has_value(value):
            register_secret(value)
            scheme, _, rest = str(value).partition(" ")
            if rest and scheme.lower() in ("basic", "bearer", "token", "digest"):
                register_secret(rest)


def register_environment(environ: Mapping[str, str] | None = None) -> None:
    """Register secret-named environment variables and passwords in URL-valued ones."""
    for key, value in (os.environ if environ is None else environ).items():
        if not value:
            continue
        if is_secret_name(key):
            register_secret(value)
        if "://" in value and ("@" in value or "?" in value):
            register_url(value)


def _walk(value: Any, path: tuple[str, ...] = ()) -> Iterable[tuple[tuple[str, ...], Any]]:
    yield path, value
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk(item, (*path, str(key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _walk(item, (*path, str(index)))


def register_values(tree: Any, marked: Iterable[str] = ()) -> None:
    """Register every secret in a settings tree (a dict of plain values, ``SecretStr`` kept).

    Secret: ``SecretStr`` values, values under secret-named keys, the secrets inside URL-valued
    strings, the environment variables that ``*_env`` settings name, and the values at the dotted
    paths in ``marked`` (a user's ``secret_settings``; ``data.source.http.headers.*`` marks every
    value below that key).
    """
    patterns = [re.compile("^" + re.escape(p).replace(r"\*", "[^.]+") + r"(\..*)?$") for p in marked]
    for path, value in _walk(tree):
        dotted = ".".join(path)
        if hasattr(value, "get_secret_value"):
            register_secret(value)
            continue
        if isinstance(value, str) and any(is_reference_name(p) for p in path):
            # A reference: ``bearer_token_env: API_TOKEN`` or ``headers_from_env: {X-API-Key:
            # VENDOR_KEY}`` name an environment variable whose value is the secret (its name is
            # not); ``*_file``, ``*_path``, ``*_id`` name where or which, and are no secret either.
            if any(_words(p)[-1:] == ["env"] for p in path):
                register_secret(os.environ.get(value))
            continue
        scalar = isinstance(value, str | int | float) and not isinstance(value, bool)
        if isinstance(value, str):
            register_url(value)
        marked_here = bool(path and is_secret_name(path[-1])) or any(p.match(dotted) for p in patterns)
        if scalar and _has_value(value) and marked_here:
            register_secret(value)


# -- sinks -------------------------------------------------------------------------------------------


class RedactingFormatter(logging.Formatter):
    """A formatter whose whole output (message, exception, stack) goes through :func:`redact`."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class RedactingStream(io.TextIOBase):
    """A text stream that masks secrets line by line before they reach the real stream.

    Whole lines are redacted, so a secret split over two ``write`` calls is still found; a pending
    partial line is redacted and written out on ``flush`` (progress displays keep working).
    """

    def __init__(self, stream: TextIO):
        self._stream = stream
        self._pending = ""
        self._lock = threading.RLock()

    @property
    def wrapped(self) -> TextIO:
        return self._stream

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            if "\n" in self._pending:
                complete, _, self._pending = self._pending.rpartition("\n")
                self._stream.write(redact(complete) + "\n")
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self._stream.write(redact(self._pending))
                self._pending = ""
            self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._stream, "errors", None)


def install_stream_redaction() -> None:
    """Route ``sys.stdout`` and ``sys.stderr`` through :class:`RedactingStream` (idempotent)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, RedactingStream):
            setattr(sys, name, RedactingStream(stream))
