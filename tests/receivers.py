"""Local SMTP and HTTP servers that record what notification channels send them.

Both listen on 127.0.0.1 on a free port, run in background threads and keep every message or
request they receive in memory, so a test can send through Apprise and then read what arrived.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

DEFAULT_WAIT_SECONDS = 10.0

T = TypeVar("T")


def free_tcp_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free at the time of the call.

    NOTE: another process can take the port before the receiver binds it, and the start then
    fails with "address already in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Inbox(Generic[T]):
    """Thread-safe list of received items that a test can wait on."""

    def __init__(self) -> None:
        self._items: list[T] = []
        self._changed = threading.Condition()

    def append(self, item: T) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    def snapshot(self) -> list[T]:
        with self._changed:
            return list(self._items)

    def clear(self) -> None:
        with self._changed:
            self._items.clear()

    def wait_for(self, count: int, timeout: float, label: str) -> list[T]:
        """Block until at least `count` items arrived and return all of them.

        Raises TimeoutError, naming `label` and the count received, after `timeout` seconds.
        """
        with self._changed:
            arrived = self._changed.wait_for(lambda: len(self._items) >= count, timeout)
            if not arrived:
                raise TimeoutError(
                    f"expected {count} {label} within {timeout} s, received {len(self._items)}"
                )
            return list(self._items)


@dataclass(frozen=True)
class ReceivedEmail:
    """Email accepted by SmtpReceiver, with the SMTP envelope and the parsed message."""

    envelope_from: str
    envelope_to: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def from_header(self) -> str:
        return str(self.message["From"] or "")

    @property
    def to_header(self) -> str:
        return str(self.message["To"] or "")

    @property
    def text(self) -> str | None:
        """Decoded text/plain body, or None when the message has no plain-text part."""
        part = self.message.get_body(preferencelist=("plain",))
        if part is None:
            return None
        content: str = part.get_content()
        return content

    @property
    def html(self) -> str | None:
        """Decoded text/html body, or None when the message has no HTML part."""
        part = self.message.get_body(preferencelist=("html",))
        if part is None:
            return None
        content: str = part.get_content()
        return content


class _RecordingHandler:
    """aiosmtpd handler that accepts every message and stores it in an Inbox."""

    def __init__(self, inbox: Inbox[ReceivedEmail]) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)

        self.inbox.append(
            ReceivedEmail(
                envelope_from=str(envelope.mail_from),
                envelope_to=list(envelope.rcpt_tos),
                message=message,
            )
        )
        return "250 Message accepted for delivery"


class SmtpReceiver:
    """Plain SMTP server without authentication or TLS that keeps every message it accepts."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_tcp_port()
        self.inbox: Inbox[ReceivedEmail] = Inbox()
        self._controller: Controller | None = None

    @property
    def messages(self) -> list[ReceivedEmail]:
        return self.inbox.snapshot()

    def start(self) -> SmtpReceiver:
        if self._controller is not None:
            raise RuntimeError(f"SMTP receiver already started on port {self.port}")
        controller = Controller(_RecordingHandler(self.inbox), hostname=self.host, port=self.port)
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        """Stop the server. Safe to call more than once."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait_for(self, count: int, timeout: float = DEFAULT_WAIT_SECONDS) -> list[ReceivedEmail]:
        """Block until at least `count` messages arrived and return all of them."""
        return self.inbox.wait_for(count, timeout, "email messages")

    def apprise_url(self, to_addr: str, from_addr: str = "watchdog@example.com") -> str:
        """Build an Apprise URL that delivers to this server over plain SMTP.

        Checked against the email plugin of apprise 2.3.0: the `mailto://` scheme with an
        explicit port, `mode=insecure` so that no STARTTLS is attempted, and no user or
        password in the URL so that no SMTP login is attempted. `from` is required because
        the host part is an IP address, from which Apprise cannot derive a sender address.
        """
        query = urlencode({"from": from_addr, "to": to_addr, "mode": "insecure"})
        return f"mailto://{self.host}:{self.port}/?{query}"

    def __enter__(self) -> SmtpReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class RecordedRequest:
    """HTTP request received by HttpReceiver."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    # Parsed body when it is valid JSON, otherwise None.
    json: Any


class _RecordingServer(ThreadingHTTPServer):
    # Handler threads must not keep the interpreter alive after a test fails mid-request.
    daemon_threads = True

    def __init__(self, address: tuple[str, int], receiver: HttpReceiver) -> None:
        super().__init__(address, _RecordingRequestHandler)
        self.receiver = receiver


class _RecordingRequestHandler(BaseHTTPRequestHandler):
    # The default HTTP/1.0 closes each connection after the response, so no handler thread is
    # left waiting on an idle keep-alive connection when the receiver stops.
    server: _RecordingServer

    def _record_and_respond(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        try:
            parsed = json.loads(body) if body else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            parsed = None

        receiver = self.server.receiver
        receiver.inbox.append(
            RecordedRequest(
                method=self.command,
                path=self.path,
                headers=dict(self.headers.items()),
                body=body,
                json=parsed,
            )
        )

        status = receiver.status
        response = receiver.response_body
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(response)))
        self.end_headers()
        self.wfile.write(response)

    do_GET = _record_and_respond
    do_POST = _record_and_respond
    do_PUT = _record_and_respond
    do_PATCH = _record_and_respond
    do_DELETE = _record_and_respond

    def log_message(self, format: str, *args: Any) -> None:
        # The default handler writes every request to stderr, and tests read requests from the
        # inbox instead.
        pass


class HttpReceiver:
    """HTTP server that records every request and responds with a configurable status.

    Set `status` (for example to 500) to make the channel under test fail, and `response_body`
    to change what the server sends back. Both apply to the requests that arrive after the
    change.
    """

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.status = 200
        self.response_body = b"ok"
        self.inbox: Inbox[RecordedRequest] = Inbox()
        self._server: _RecordingServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("HTTP receiver is not started: call start() first")
        return self._server.server_address[1]

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.inbox.snapshot()

    def start(self) -> HttpReceiver:
        if self._server is not None:
            raise RuntimeError(f"HTTP receiver already started on port {self.port}")
        # Port 0 lets the kernel choose a free port when binding, so no race with other servers.
        self._server = _RecordingServer((self.host, 0), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"http-receiver-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the server and close its socket. Safe to call more than once."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def wait_for(self, count: int, timeout: float = DEFAULT_WAIT_SECONDS) -> list[RecordedRequest]:
        """Block until at least `count` requests arrived and return all of them."""
        return self.inbox.wait_for(count, timeout, "HTTP requests")

    def url(self, path: str = "/") -> str:
        """Return the http:// URL of `path` on this server."""
        return f"http://{self.host}:{self.port}{_with_leading_slash(path)}"

    def json_url(self, path: str = "/notify") -> str:
        """Return an Apprise URL for the JSON plugin that posts to `path` on this server."""
        return f"json://{self.host}:{self.port}{_with_leading_slash(path)}"

    def __enter__(self) -> HttpReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _with_leading_slash(path: str) -> str:
    return path if path.startswith("/") else f"/{path}"
