"""The one HTTP session: bounded retries on 429/5xx/connection faults, none on other 4xx, no secrets logged."""

from __future__ import annotations

import pytest

from fetchers.http import ChannelSession, _retry_after
from fetchers.sandbox import Sandbox, SandboxRequest, SandboxResponse
from recon.errors import TransientFetchError

SECRET = "sk_live_TOPSECRET"


class Echo:
    """A channel that answers 200 with what it was asked, or the status in ?status=."""

    prefix = "/echo"

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        status = int(request.query.get("status", "200"))
        return SandboxResponse.json({"path": request.path, "token": request.query.get("token")}, status=status)


def session(waits: list[float]) -> ChannelSession:
    return ChannelSession("echo", secrets=[SECRET], sleep=waits.append, read_timeout=1.0)


@pytest.mark.parametrize("fault", ["500", "429", "reset", "timeout"])
def test_transient_faults_are_retried_then_succeed(fault: str) -> None:
    waits: list[float] = []
    with Sandbox(Echo()) as sandbox:
        sandbox.add_fault(fault, times=2)
        response = session(waits).request("GET", sandbox.url("/echo") + "/x")
    assert response.status_code == 200
    assert len(waits) == 2
    if fault == "429":
        assert waits == [1.0, 1.0]  # Retry-After honoured
    else:
        assert waits == [0.5, 1.0]  # capped exponential backoff


def test_retries_are_bounded_and_the_error_names_no_secret() -> None:
    waits: list[float] = []
    s = session(waits)
    with Sandbox(Echo()) as sandbox:
        sandbox.add_fault("500", times=10)
        with pytest.raises(TransientFetchError) as caught:
            s.request("GET", sandbox.url("/echo") + f"/x?token={SECRET}")
        assert len(sandbox.requests) == s.max_attempts
    assert caught.value.retryable
    assert "after 4 attempt(s): HTTP 500" in str(caught.value)
    assert SECRET not in str(caught.value) and SECRET not in repr(s.attempts_log)


def test_other_client_errors_are_returned_at_once() -> None:
    waits: list[float] = []
    with Sandbox(Echo()) as sandbox:
        response = session(waits).request("GET", sandbox.url("/echo") + "/x?status=400")
        assert len(sandbox.requests) == 1
    assert response.status_code == 400 and waits == []


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert _retry_after("3") == 3.0
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert _retry_after("soon") is None


def test_library_debug_logging_never_shows_a_secret(caplog: pytest.LogCaptureFixture) -> None:
    waits: list[float] = []
    with Sandbox(Echo()) as sandbox, caplog.at_level("DEBUG", logger="urllib3"):
        s = session(waits)
        s.add_secret("oauth-token-learnt-at-run-time")
        s.request("GET", sandbox.url("/echo") + f"/{SECRET}/oauth-token-learnt-at-run-time?token={SECRET}")
    logged = caplog.text
    assert "GET /echo" in logged
    assert SECRET not in logged and "oauth-token-learnt-at-run-time" not in logged
