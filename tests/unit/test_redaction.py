"""The one redaction mechanism (pipeline.redaction): shapes, known values, and its sinks."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from pipeline.redaction import (
    MASK,
    REDACTOR,
    RedactingFormatter,
    RedactingStream,
    is_secret_name,
    redact,
    redact_data,
    register_secret,
)
from pipeline.settings import Settings
from pipeline.storage import Manifest
from tests.conftest import run_cli

CANARY = "cAnArY-7f3e9a"


@pytest.fixture(autouse=True)
def _fresh_registry():
    REDACTOR.forget_all()
    yield
    REDACTOR.forget_all()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://u:pw-1234@host/db", "postgresql://u:***@host/db"),
        ("postgresql://:pw-1234@host/db", "postgresql://:***@host/db"),  # no user
        ("postgresql://u:p@ss@word@host:5432/db", "postgresql://u:***@host:5432/db"),  # unencoded '@'
        ("https://TOKEN1234@git.example/x", "https://***@git.example/x"),  # a bare token as user-info
        ("https://h/x?api_key=K123456&page=2&password=P9876", "https://h/x?api_key=***&page=2&password=***"),
        ("http://127.0.0.1:5000?password=ZZZZ9", "http://127.0.0.1:5000?password=***"),
        ("GET https://h/x?apiKey=abcdef&token=qwerty", "GET https://h/x?apiKey=***&token=***"),
        ("Authorization: Bearer abcdefgh12", "Authorization: Bearer ***"),
        (
            "{'Authorization': 'Basic dXNlcjpwdw==', 'Accept': 'json'}",
            "{'Authorization': 'Basic ***', 'Accept': 'json'}",
        ),
        ('{"X-API-Key": "xk12345"}', '{"X-API-Key": "***"}'),
        ('"secret_access_key": "s3cr3tvalue"', '"secret_access_key": "***"'),
        ("s3.secret_access_key=abcdef", "s3.secret_access_key=***"),
        ("password: hunter22", "password: ***"),
    ],
)
def test_credential_shapes_are_masked_without_knowing_the_value(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "s3://bucket/prefix/data.csv",
        "sqlite:////tmp/home/mlflow.db",
        "https://example.org/data.csv?page=2&limit=100",
        "author: bob, max_tokens=5, access_key_id=AKIA1234, token_env=API_TOKEN",
        "feature_store_password: null",
        "postgresql+psycopg2://features@db:5432/features",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_a_registered_value_is_masked_everywhere_raw_and_url_encoded() -> None:
    secret = "p@ss/w0rd:with&odd=chars"
    register_secret(secret)
    from urllib.parse import quote, quote_plus

    for text in (
        f"error: could not connect with {secret} to the server",
        f"postgresql://u:{quote(secret, safe='')}@h/db",
        f"https://h/x?custom={quote_plus(secret)}",
        f"tail only: {secret.split('@', 1)[1]} is not the whole secret",
    ):
        out = redact(text)
        assert quote(secret, safe="") not in out and quote_plus(secret) not in out
    assert secret not in redact(f"error: could not connect with {secret} to the server")


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("feature_store_password", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("MLFLOW_TRACKING_TOKEN", True),
        ("X-API-Key", True),
        ("apiKey", True),
        ("Authorization", True),
        ("access_key_id", False),
        ("token_env", False),
        ("password_file", False),
        ("author", False),
        ("page_param", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_structures_mask_secret_keys_and_values() -> None:
    register_secret(CANARY)
    data = {
        "headers": {"Authorization": "Bearer x1", "Accept": "text/csv"},
        "password": None,
        "uri": "http://u:pp1234@h/x",
        "nested": [{"note": f"says {CANARY}"}],
    }
    out = redact_data(data)
    assert out["headers"] == {"Authorization": MASK, "Accept": "text/csv"}
    assert out["password"] is None
    assert out["uri"] == "http://u:***@h/x"
    assert CANARY not in json.dumps(out)


def test_settings_register_every_secret_they_hold(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", f"{CANARY}-mlflow")
    monkeypatch.setenv("SOURCE_CRED", f"{CANARY}-bearer")  # a name that does not say "secret"
    settings = Settings.load(
        data={
            "source": {
                "uri": f"https://user:{CANARY}-url@api.example/data?api_key={CANARY}-q&page=1",
                "http": {
                    "headers": {"X-API-Key": f"{CANARY}-h", "X-Tenant": f"{CANARY}-marked"},
                    "bearer_token_env": "SOURCE_CRED",
                },
            }
        },
        feature_store_url="postgresql+psycopg2://features@db:5432/features",
        feature_store_password=f"{CANARY}-fs",
        s3={"secret_access_key": f"{CANARY}-s3"},
        secret_settings=["data.source.http.headers.X-Tenant"],
    )
    recorded = json.dumps(settings.redacted())
    assert CANARY not in recorded
    for suffix in ("url", "q", "h", "marked", "bearer", "fs", "s3", "mlflow"):
        assert CANARY not in redact(f"leaked: {CANARY}-{suffix}!"), suffix
    # What is not secret stays readable.
    assert settings.redacted()["data"]["source"]["uri"].startswith("https://user:***@api.example/data?")


def test_the_log_formatter_and_the_streams_redact() -> None:
    register_secret(CANARY)
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "connect %s failed", (CANARY,), None)
    try:
        raise RuntimeError(f"postgresql://u:{CANARY}@h/db refused")
    except RuntimeError as exc:
        record.exc_info = (type(exc), exc, exc.__traceback__)
    assert CANARY not in RedactingFormatter("%(message)s").format(record)

    sink = io.StringIO()
    stream = RedactingStream(sink)
    stream.write("first half " + CANARY[:5])  # a secret split across writes of one line
    stream.write(CANARY[5:] + " second half\nnext")
    stream.flush()
    assert CANARY not in sink.getvalue()
    assert sink.getvalue() == f"first half {MASK} second half\nnext"


def test_manifests_are_published_redacted() -> None:
    register_secret(CANARY)
    manifest = Manifest(
        "r1", "ingest", "succeeded", "a1", "t0", "t1", {}, {"source": {"uri": f"https://h/x?token={CANARY}"}}
    )
    assert CANARY not in manifest.to_json()
    assert Manifest.from_json(manifest.to_json()).summary["source"]["uri"] == "https://h/x?token=***"


def test_pipeline_config_prints_no_secret(home: Path) -> None:
    """`pipeline config` with a canary in every secret-bearing setting (the audit's cases)."""
    env = {
        "PIPELINE_DATA__SOURCE__URI": f"https://reader:{CANARY}a@api.example/x?api_key={CANARY}b&password={CANARY}c",
        "PIPELINE_DATA__SOURCE__HTTP__HEADERS": json.dumps(
            {"Authorization": f"Bearer {CANARY}d", "X-API-Key": f"{CANARY}e"}
        ),
        "PIPELINE_FEATURE_STORE_URL": f"postgresql://:{CANARY}f@db/features",
        "MLFLOW_TRACKING_URI": f"http://mlflow:5000/?password={CANARY}g",
        "PIPELINE_SWEEP__STORAGE_URL": f"postgresql://u:{CANARY}h@x@db/optuna",  # unencoded '@'
        "PIPELINE_S3__SECRET_ACCESS_KEY": f"{CANARY}i",
    }
    result = run_cli(["config"], home, **env)
    assert result.returncode == 0, result.stderr
    assert CANARY not in result.stdout + result.stderr
    assert "api.example" in result.stdout and "X-API-Key" in result.stdout


def test_secrets_by_reference_mask_the_value_and_keep_the_name(
    monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    monkeypatch.setenv("VENDOR_KEY", f"{CANARY}-vendor")
    monkeypatch.setenv("READER_CRED", f"{CANARY}-bearer")
    settings = Settings.load(
        data={
            "source": {
                "uri": "https://api.example/data",
                "http": {"headers_from_env": {"X-API-Key": "VENDOR_KEY"}, "bearer_token_env": "READER_CRED"},
            }
        }
    )
    recorded = settings.redacted()["data"]["source"]["http"]
    assert recorded["headers_from_env"] == {"X-API-Key": "VENDOR_KEY"}  # where, not what
    assert recorded["bearer_token_env"] == "READER_CRED"
    for suffix in ("vendor", "bearer"):
        assert CANARY not in redact(f"sent {CANARY}-{suffix}")
    assert redact("variable VENDOR_KEY is not set") == "variable VENDOR_KEY is not set"
