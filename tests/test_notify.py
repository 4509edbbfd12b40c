"""Delivery through Apprise: a real local HTTP receiver, and Slack and Telegram
requests intercepted at `requests.Session.request` so nothing leaves the host.

Apprise 2.3.0's Slack plugin calls `requests.request` and its Telegram plugin
calls `requests.post`. Both end in `requests.Session.request`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import apprise
import apprise.plugins.slack
import pytest
import requests
from receivers import HttpReceiver, free_tcp_port

from watchdog.channels import Channel
from watchdog.models import Severity
from watchdog.notify import (
    TELEGRAM_RETRY_BODY_CHARS,
    DeliveryResult,
    mask_url,
    notify_type_for,
    prepare_url,
    send,
    validate_url,
)

SLACK_URL = "slack://T1ABCDEFG/B2ABCDEFG/C3abcdefghijklmnopqrstuv/#alerts"
SLACK_WEBHOOK = "https://hooks.slack.com/services/T1ABCDEFG/B2ABCDEFG/C3abcdefghijklmnopqrstuv"
TELEGRAM_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
TELEGRAM_URL = f"tgram://{TELEGRAM_TOKEN}/987"

# Text from the database that Markdown, mrkdwn or HTML would interpret.
TITLE = "[CRITICAL] purge_old_rows: *nightly* <purge>"
BODY = (
    'Job purge_old_rows failed: ERROR:  syntax error at or near "<"\n'
    "value < 0 & x > 1 [#1] v1.2 *all* _x_"
)


@dataclass
class InterceptedRequest:
    method: str
    url: str
    payload: Any


@dataclass
class FakeHttp:
    """Stand-in for `requests.Session.request` that records each call and replays responses.

    The last response repeats once the list is used up.
    """

    responses: list[tuple[int, bytes]]
    calls: list[InterceptedRequest] = field(default_factory=list)

    def request(self, session: requests.Session, method: str, url: str, **kwargs: Any) -> Any:
        data = kwargs.get("data")
        payload = json.loads(data) if isinstance(data, str | bytes) else data
        self.calls.append(InterceptedRequest(method.lower(), url, payload))

        index = min(len(self.calls), len(self.responses)) - 1
        status, content = self.responses[index]
        response = requests.Response()
        response.status_code = status
        response._content = content
        response.url = url
        return response


@pytest.fixture
def fake_http(monkeypatch: pytest.MonkeyPatch) -> FakeHttp:
    """Intercept every request made through `requests`, responding 200 by default."""
    fake = FakeHttp(responses=[(200, b'{"ok": true}')])

    def request(session: requests.Session, method: str, url: str, **kwargs: Any) -> Any:
        return fake.request(session, method, url, **kwargs)

    monkeypatch.setattr(requests.Session, "request", request)
    return fake


def channel_of(*urls: str, name: str = "ops") -> Channel:
    return Channel(name=name, urls=urls)


# --- Local HTTP receiver -----------------------------------------------------


def test_send_posts_json_to_receiver(http_receiver: HttpReceiver) -> None:
    url = http_receiver.json_url()

    results = send(channel_of(url), TITLE, BODY, Severity.CRITICAL)

    assert results == [DeliveryResult(url_masked=mask_url(prepare_url(url)), ok=True, error=None)]
    [received] = http_receiver.wait_for(1)
    assert received.method == "POST"
    assert received.path == "/notify"
    assert received.json == {
        "version": "1.0",
        "title": TITLE,
        "message": BODY,
        "attachments": [],
        "type": "failure",
    }


@pytest.mark.parametrize(
    ("severity_or_state", "expected_type"),
    [
        (Severity.CRITICAL, "failure"),
        (Severity.WARNING, "warning"),
        (Severity.INFO, "info"),
        ("critical", "failure"),
        ("warning", "warning"),
        ("info", "info"),
        ("resolved", "success"),
    ],
)
def test_send_maps_severity_to_notify_type(
    http_receiver: HttpReceiver, severity_or_state: Severity | str, expected_type: str
) -> None:
    [result] = send(channel_of(http_receiver.json_url()), "t", "b", severity_or_state)

    assert result.ok
    [received] = http_receiver.wait_for(1)
    assert received.json["type"] == expected_type


def test_send_rejects_unknown_severity(http_receiver: HttpReceiver) -> None:
    with pytest.raises(ValueError, match=r"'fatal'.*critical, resolved"):
        send(channel_of(http_receiver.json_url()), "t", "b", "fatal")
    assert http_receiver.requests == []


def test_failing_url_does_not_stop_the_next(http_receiver: HttpReceiver) -> None:
    with HttpReceiver() as failing:
        failing.status = 500
        channel = channel_of(failing.json_url("/broken"), http_receiver.json_url("/works"))

        first, second = send(channel, "t", "b", Severity.WARNING)

        assert first.ok is False
        assert first.error is not None
        assert "error=500" in first.error
        assert first.url_masked.startswith(f"json://127.0.0.1:{failing.port}/broken")
        assert len(failing.wait_for(1)) == 1
    assert second.ok is True
    assert second.error is None
    assert [request.path for request in http_receiver.wait_for(1)] == ["/works"]


def test_unreachable_url_reports_connection_error() -> None:
    # Nothing listens on this loopback port once the probe socket is closed.
    url = f"json://127.0.0.1:{free_tcp_port()}/"

    [result] = send(channel_of(url), "t", "b", Severity.CRITICAL)

    assert result.ok is False
    assert result.error is not None
    assert "connection error" in result.error.lower()


def test_invalid_url_fails_alone_without_secret(http_receiver: HttpReceiver) -> None:
    channel = channel_of("tgram://s3cretbot/987", http_receiver.json_url())

    invalid, valid = send(channel, "t", "b", Severity.CRITICAL)

    assert invalid.ok is False
    assert invalid.url_masked == "tgram://***/***"
    assert invalid.error is not None
    assert invalid.error.startswith("invalid Apprise URL tgram://***/***")
    assert "s3cretbot" not in invalid.error
    assert valid.ok is True
    assert len(http_receiver.wait_for(1)) == 1


def test_delivery_log_never_contains_password(
    http_receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="watchdog.notify")
    url = f"json://watch:Pa55word-x@127.0.0.1:{http_receiver.port}/hook"

    send(channel_of(url, name="dba"), "t", "b", Severity.CRITICAL)
    http_receiver.status = 500
    send(channel_of(url, name="dba"), "t", "b", Severity.CRITICAL)

    records = [record for record in caplog.records if record.name == "watchdog.notify"]
    assert [record.levelno for record in records] == [logging.INFO, logging.WARNING]
    delivered, failed = (record.getMessage() for record in records)
    assert delivered.startswith(f"channel dba: delivered to json://watch:****@127.0.0.1:{http_receiver.port}/hook")
    assert "failed" in failed
    assert "error=500" in failed
    assert "Pa55word-x" not in caplog.text


# --- Slack, intercepted --------------------------------------------------------


def test_slack_payload_is_plain_text_with_html_escaped(
    fake_http: FakeHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_http.responses = [(200, b"ok")]
    monkeypatch.setattr(apprise.plugins.slack, "time", lambda: 1746446400.0)

    [result] = send(channel_of(SLACK_URL), TITLE, BODY, Severity.CRITICAL)

    assert result.ok, result.error
    [request] = fake_http.calls
    assert request.method == "post"
    assert request.url == (
        "https://hooks.slack.com/services/T1ABCDEFG/B2ABCDEFG/C3abcdefghijklmnopqrstuv"
    )
    icon = (
        "https://github.com/caronc/apprise/raw/master/apprise/assets/themes/default/"
        "apprise-failure-72x72.png"
    )
    # Slack reads `&`, `<` and `>` as entities and link syntax, so Apprise sends
    # them escaped. With "mrkdwn": false, `*`, `_` and `[` stay literal.
    assert request.payload == {
        "mrkdwn": False,
        "attachments": [
            {
                "title": "[CRITICAL] purge_old_rows: *nightly* &lt;purge&gt;",
                "text": (
                    'Job purge_old_rows failed: ERROR:  syntax error at or near "&lt;"\n'
                    "value &lt; 0 &amp; x &gt; 1 [#1] v1.2 *all* _x_"
                ),
                "color": "#A32037",
                "footer_icon": icon,
                "footer": "Apprise",
                "ts": 1746446400.0,
            }
        ],
        "icon_url": icon,
        "channel": "#alerts",
    }


def test_slack_webhook_url_posts_to_same_endpoint(fake_http: FakeHttp) -> None:
    fake_http.responses = [(200, b"ok")]

    [result] = send(channel_of(SLACK_WEBHOOK), "t", "b", "resolved")

    assert result.ok, result.error
    [request] = fake_http.calls
    assert request.url == SLACK_WEBHOOK
    assert request.payload["attachments"][0]["color"] == "#3AA337"
    assert "channel" not in request.payload


def test_slack_failure_is_not_retried(fake_http: FakeHttp) -> None:
    fake_http.responses = [(500, b"internal_error")]

    [result] = send(channel_of(SLACK_URL), TITLE, BODY, Severity.CRITICAL)

    assert result.ok is False
    assert result.error is not None
    assert "error=500" in result.error
    assert len(fake_http.calls) == 1


# --- Telegram, intercepted ------------------------------------------------------


def test_telegram_payload_escapes_html(fake_http: FakeHttp) -> None:
    [result] = send(channel_of(TELEGRAM_URL), TITLE, BODY, Severity.CRITICAL)

    assert result.ok, result.error
    [request] = fake_http.calls
    assert request.method == "post"
    assert request.url == f"https://api.telegram.org/bot{TELEGRAM_TOKEN}/sendMessage"
    # TEXT goes out in Telegram's HTML parse mode: the title in <b>, the text
    # entity-escaped, and `_`, `*`, `[` and `#` sent as they are.
    assert request.payload == {
        "chat_id": 987,
        "disable_notification": False,
        "disable_web_page_preview": True,
        "parse_mode": "HTML",
        "text": (
            "<b>[CRITICAL] purge_old_rows: *nightly* &lt;purge&gt;</b>\r\n"
            'Job purge_old_rows failed: ERROR:  syntax error at or near "&lt;"\r\n'
            "value &lt; 0 &amp; x &gt; 1 [#1] v1.2 *all* _x_"
        ),
    }


def test_telegram_long_body_is_truncated_to_limit(fake_http: FakeHttp) -> None:
    [result] = send(channel_of(TELEGRAM_URL), "t", "x" * 10_000, Severity.CRITICAL)

    assert result.ok, result.error
    [request] = fake_http.calls
    assert len(request.payload["text"]) <= 4096
    assert request.payload["text"].startswith("<b>t</b>\r\nxxx")


def test_telegram_own_overflow_mode_is_kept(fake_http: FakeHttp) -> None:
    [result] = send(channel_of(f"{TELEGRAM_URL}?overflow=split"), "t", "x" * 10_000, "info")

    assert result.ok, result.error
    texts = [request.payload["text"] for request in fake_http.calls]
    assert len(texts) > 1
    assert all(len(text) <= 4096 for text in texts)
    assert sum(text.count("x") for text in texts) == 10_000


def test_telegram_failure_is_retried_with_cut_body(
    fake_http: FakeHttp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="watchdog.notify")
    rejected = json.dumps({"ok": False, "description": "Bad Request: can't parse entities"})
    fake_http.responses = [(400, rejected.encode()), (200, b'{"ok": true}')]
    body = "y" * 5000

    [result] = send(channel_of(TELEGRAM_URL), "t", body, Severity.CRITICAL)

    assert result == DeliveryResult(url_masked=result.url_masked, ok=True, error=None)
    first, retry = fake_http.calls
    assert retry.payload["text"] == "<b>t</b>\r\n" + "y" * (TELEGRAM_RETRY_BODY_CHARS - 1) + "…"
    assert len(first.payload["text"]) > len(retry.payload["text"])
    assert "retrying once" in caplog.text
    assert "can't parse entities" in caplog.text
    assert TELEGRAM_TOKEN not in caplog.text


def test_telegram_failing_twice_reports_reason(fake_http: FakeHttp) -> None:
    rejected = json.dumps({"ok": False, "description": "Bad Request: message is too long"})
    fake_http.responses = [(400, rejected.encode())]

    [result] = send(channel_of(TELEGRAM_URL), "t", "b", Severity.CRITICAL)

    assert result.ok is False
    assert result.error is not None
    assert "message is too long" in result.error
    assert "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw" not in result.error
    assert len(fake_http.calls) == 2


# --- notify_type_for -----------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "severity", "expected"),
    [
        ("firing", Severity.CRITICAL, apprise.NotifyType.FAILURE),
        ("firing", Severity.WARNING, apprise.NotifyType.WARNING),
        ("firing", Severity.INFO, apprise.NotifyType.INFO),
        ("resolved", Severity.CRITICAL, apprise.NotifyType.SUCCESS),
        ("resolved", Severity.INFO, apprise.NotifyType.SUCCESS),
    ],
)
def test_notify_type_for(state: str, severity: Severity, expected: apprise.NotifyType) -> None:
    assert notify_type_for(state, severity) == expected


def test_notify_type_for_rejects_unknown_state() -> None:
    with pytest.raises(ValueError, match="'pending'"):
        notify_type_for("pending", Severity.CRITICAL)


# --- mask_url, validate_url, prepare_url --------------------------------------


@pytest.mark.parametrize(
    ("url", "secrets", "prefix"),
    [
        (SLACK_URL, ["T1ABCDEFG", "B2ABCDEFG", "C3abcdefghijklmnopqrstuv"], "slack://T...G/B...G/"),
        (SLACK_WEBHOOK, ["T1ABCDEFG", "B2ABCDEFG", "C3abcdefghijklmnopqrstuv"], "slack://"),
        (TELEGRAM_URL, [TELEGRAM_TOKEN, "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"], "tgram://"),
        ("json://watch:Pa55word-x@127.0.0.1:8080/hook", ["Pa55word-x"], "json://watch:****@"),
        ("mailto://alerts:Pa55word-y@example.com", ["Pa55word-y"], "mailto://alerts:****@"),
        ("garbage://root:Pa55word-z@db-host/t0ken-abc", ["Pa55word-z", "t0ken-abc"], "garbage://"),
    ],
)
def test_mask_url_hides_secrets(url: str, secrets: list[str], prefix: str) -> None:
    masked = mask_url(url)

    assert masked.startswith(prefix)
    for secret in secrets:
        assert secret not in masked


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("garbage://root:Pa55word-z@db-host/t0ken-abc", "garbage://***@***/***"),
        ("garbage://root:Pa55word-z@db.example.com:2525/t0ken", "garbage://***@db.example.com:2525/***"),
        ("tgram://t0ken-abcdef/987", "tgram://***/***"),
        ("nosuch://123456:789012/987", "nosuch://***/***"),
        ("not a url", "***"),
    ],
)
def test_mask_url_of_unparsable_url(url: str, expected: str) -> None:
    assert mask_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [SLACK_URL, SLACK_WEBHOOK, TELEGRAM_URL, "json://127.0.0.1:8080/", "mailto://a:b@example.com"],
)
def test_validate_url_accepts_valid(url: str) -> None:
    assert validate_url(url) is None


def test_validate_url_explains_invalid_without_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    error = validate_url("tgram://s3cretbot/987")

    assert error is not None
    assert error.startswith("invalid Apprise URL tgram://***/***: Unparseable Telegram URL")
    assert "https://github.com/caronc/apprise/wiki" in error
    assert "s3cretbot" not in error
    # Apprise 2.3.0 logs this URL with the token in clear, and that line must
    # not reach the application's log.
    assert "s3cretbot" not in caplog.text


def test_validate_url_hides_tokens_apprise_prints(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # The third token is missing, as when its environment variable was empty.
    url = "slack://T1ABCDEFG/B2ABCDEFG/#alerts"

    error = validate_url(url)

    assert error is not None
    assert "Could not load Slack URL" in error
    for token in ("T1ABCDEFG", "B2ABCDEFG"):
        assert token not in error
        assert token not in caplog.text


def test_validate_url_names_unsupported_scheme() -> None:
    error = validate_url("nosuch://host.example.com/s3cret-path")

    assert error is not None
    assert "nosuch://host.example.com/***" in error
    assert "s3cret-path" not in error


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("json://127.0.0.1:8080/hook", "json://127.0.0.1:8080/hook?overflow=truncate"),
        ("json://127.0.0.1:8080/hook?method=PUT", "json://127.0.0.1:8080/hook?method=PUT&overflow=truncate"),
        (SLACK_URL, f"{SLACK_URL}?overflow=truncate"),
        (f"{TELEGRAM_URL}?overflow=split", f"{TELEGRAM_URL}?overflow=split"),
        (f"{TELEGRAM_URL}?OVERFLOW=upstream", f"{TELEGRAM_URL}?OVERFLOW=upstream"),
    ],
)
def test_prepare_url_adds_overflow_truncate(url: str, expected: str) -> None:
    assert prepare_url(url) == expected


def test_prepared_slack_url_keeps_channel() -> None:
    plugin = apprise.Apprise.instantiate(prepare_url(SLACK_URL))

    assert isinstance(plugin, apprise.plugins.slack.NotifySlack)
    assert plugin.overflow_mode == apprise.OverflowMode.TRUNCATE
    assert plugin.channels == ["#alerts"]
