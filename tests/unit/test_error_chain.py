"""The one walk over an error's causes (``pipeline.storage.error_chain``) that ``describe_error``
and ``pipeline doctor`` share: botocore's error is found behind s3fs's and DVC's wrappers."""

from __future__ import annotations

import botocore.exceptions as bexc

from pipeline.storage import botocore_cause, describe_error, error_chain


def client_error() -> bexc.ClientError:
    response = {
        "Error": {"Code": "AccessDenied", "Message": "denied"},
        "ResponseMetadata": {"HTTPStatusCode": 403, "RetryAttempts": 2},
    }
    return bexc.ClientError(response, "PutObject")


def wrapped(inner: BaseException, explicit: bool) -> OSError:
    try:
        try:
            raise inner
        except BaseException as exc:
            if explicit:
                raise OSError("wrapped") from exc
            raise OSError("wrapped")  # noqa: B904 - the implicit context is what is walked
    except OSError as outer:
        return outer


def test_botocore_cause_behind_cause_and_context() -> None:
    for explicit in (True, False):
        inner = client_error()
        outer = wrapped(RuntimeError("middle"), explicit)
        middle = outer.__cause__ if explicit else outer.__context__
        assert isinstance(middle, RuntimeError)
        middle.__cause__ = inner
        assert botocore_cause(outer) is inner
        assert list(error_chain(outer))[-1] is inner
    plain = ValueError("no botocore here")
    assert botocore_cause(plain) is plain


def test_describe_error_reports_what_s3_answered() -> None:
    line = describe_error(wrapped(client_error(), explicit=True))
    assert line.startswith("OSError: wrapped")
    assert "(S3 answered 403 AccessDenied after 3 attempt(s))" in line
    assert "S3 answered" not in describe_error(client_error()), "only for a wrapped error"


def test_an_answer_without_a_body_names_the_status_once() -> None:
    # A HEAD's error carries no body, so botocore gives the status as the code.
    response = {
        "Error": {"Code": "500", "Message": ""},
        "ResponseMetadata": {"HTTPStatusCode": 500, "RetryAttempts": 1},
    }
    line = describe_error(wrapped(bexc.ClientError(response, "HeadObject"), explicit=True))
    assert line.endswith("(S3 answered 500 after 2 attempt(s))"), line


def test_a_cycle_of_causes_ends() -> None:
    first, second = ValueError("a"), ValueError("b")
    first.__cause__, second.__cause__ = second, first
    assert list(error_chain(first)) == [first, second]
    assert botocore_cause(first) is first
