"""A small in-process Twilio-compatible Calls API and webhook sender for integration tests."""

from __future__ import annotations

import base64
import email.parser
import hmac
import http.client
import io
import json
import random
import re
import secrets
import select
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from email.utils import format_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

API_VERSION = "2010-04-01"
STATUSES = ("queued", "ringing", "in-progress", "completed", "busy", "failed", "no-answer", "canceled")
TERMINAL_STATUSES = ("completed", "busy", "failed", "no-answer", "canceled")

_CALLS = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Calls\.json$")
_CALL = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Calls/(?P<sid>[^/]+)\.json$")
_SUBRESOURCES = (
    "feedback", "notifications", "recordings", "streams", "payments", "siprec",
    "events", "feedback_summaries", "transcriptions", "user_defined_message_subscriptions",
    "user_defined_messages",
)
# A direct opener: environment proxies must never capture traffic to 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_REDIRECTOR = next(h for h in _OPENER.handlers if isinstance(h, urllib.request.HTTPRedirectHandler))
_REDIRECTS = (301, 302, 303, 307, 308)
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux


class FormParams(dict):
    """Form params (name -> str, or list of str when repeated); `getlist` lets RequestValidator sign lists."""

    def getlist(self, name):
        value = self[name]
        return list(value) if isinstance(value, (list, tuple)) else [value]


def parse_form(body: str) -> FormParams:
    parsed = urllib.parse.parse_qs(body, keep_blank_values=True)
    return FormParams({k: v[0] if len(v) == 1 else v for k, v in parsed.items()})


def twilio_error(code: int, message: str, status: int) -> dict:
    return {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}


_clock: tuple[int, str] = (0, "")


def _now_rfc2822() -> str:
    """The current time as Twilio writes it (whole seconds), formatted once a second."""
    global _clock
    clock, second = _clock, int(time.time())
    if clock[0] != second:
        _clock = clock = (second, format_datetime(datetime.fromtimestamp(second, timezone.utc)))
    return clock[1]


class FakeProvider:
    def __init__(
        self,
        accounts: dict[str, str],
        rate_limit_per_second: float | None = None,
        fail_ratio: float = 0.0,
        seed: int | None = None,
        refused_numbers: tuple[str, ...] | list[str] = (),
        drop_callbacks: bool | float = False,
        delay_seconds: float = 0.0,
        delay_ratio: float = 1.0,
        fail_after_create: bool | float = False,
        callback_timeout: float = 5.0,
        port: int = 0,
        keep_alive: bool = False,
        callback_keep_alive: bool = False,
    ):
        self.accounts = dict(accounts)
        self.rate_limit_per_second = rate_limit_per_second
        self.fail_ratio = fail_ratio
        self.refused_numbers = set(refused_numbers)
        # Fault options are plain attributes so a test can flip them between requests.
        self.drop_callbacks = drop_callbacks
        self.delay_seconds = delay_seconds
        self.delay_ratio = delay_ratio  # the share of creates that are delayed by delay_seconds
        self.fail_after_create = fail_after_create
        self.callback_timeout = callback_timeout
        self.port = port
        # Connections kept alive as Twilio's: keep_alive, the API's (HTTP/1.1); callback_keep_alive, the status
        # callbacks' (one connection per sending thread and host). False: a connection a request, as before (with
        # keep_alive the chaos test's dialers went over their rate: see docs/behaviour.md)
        self.keep_alive = keep_alive
        self.callback_keep_alive = callback_keep_alive
        self.created_calls: list[dict] = []
        self.fetches: list[dict] = []
        self.lists: list[dict] = []  # GET .../Calls.json requests: {"account_sid", "query", "at", "status_code"}
        self.list_supported = True  # False: answer a list of calls with 404, as a platform without it
        # One of BAD_ANSWERS, or "repeat_sid" (the last call made, again): every create, fetch and list (those in bad_answer_on) gets that answer instead
        self.bad_answer: str | None = None
        self.bad_answer_on = {"create", "fetch", "list"}
        self.bad_answered: list[dict] = []  # {"request": create/fetch/list, "answer": the kind, "authorization"}
        self.redirected: list[dict] = []  # requests that followed a redirect answer to /redirected
        self.callbacks: list[dict] = []
        self._calls: dict[str, dict] = {}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._tokens = float(max(1.0, rate_limit_per_second or 0.0))
        self._refilled_at = time.monotonic()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._validators: dict[str, RequestValidator] = {}  # auth token -> its validator
        self._senders = threading.local()  # a thread's kept-alive webhook connections, by scheme and host
        self._sender_connections: list[http.client.HTTPConnection] = []  # all of them, closed by stop()
        self._idle: set[socket.socket] = set()  # API connections waiting for their next request

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> "FakeProvider":
        provider = self

        class Handler(_Handler):
            pass

        Handler.provider = provider
        Handler.protocol_version = "HTTP/1.1" if self.keep_alive else "HTTP/1.0"
        self._stopping.clear()
        self._httpd = _Server(("127.0.0.1", self.port), Handler)
        if _SO_TIMESTAMPNS is not None:  # stamped from their first packet: the accepted connections inherit it
            self._httpd.socket.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-provider", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        with self._lock:
            self._stopping.set()  # wakes handlers sleeping in delay_seconds; no connection kept alive after theirs
            for connection in self._idle:  # kept-alive connections between requests: closed, as a stopped server's
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._idle.clear()
            senders, self._sender_connections = self._sender_connections, []
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self._httpd = self._thread = None
        for connection in senders:
            connection.close()

    def __enter__(self) -> "FakeProvider":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("FakeProvider is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- inspection ---------------------------------------------------------

    def create_timestamps(self) -> list[float]:
        """time.monotonic() of every create request that reached the server, rejected ones included."""
        with self._lock:
            return [c["at"] for c in self.created_calls]

    def call(self, sid: str) -> dict:
        with self._lock:
            return json.loads(json.dumps(self._calls[sid]["resource"]))

    def call_sids(self) -> list[str]:
        with self._lock:
            return list(self._calls)

    def calls(self) -> list[dict]:
        with self._lock:
            return [json.loads(json.dumps(c["resource"])) for c in self._calls.values()]

    # -- call progression -----------------------------------------------------

    def set_status(self, sid: str, status: str, duration: int | None = None) -> dict:
        if status not in STATUSES:
            raise ValueError(f"unknown call status {status!r}")
        now = _now_rfc2822()
        with self._lock:
            res = self._calls[sid]["resource"]
            res["status"] = status
            res["date_updated"] = now
            if status == "in-progress" and res["start_time"] is None:
                res["start_time"] = now
            if status in TERMINAL_STATUSES:
                res["end_time"] = res["end_time"] or now
                res["duration"] = str(duration if duration is not None else 0)
            elif duration is not None:
                res["duration"] = str(duration)
            return dict(res)

    def send_status_callback(
        self,
        sid: str,
        status: str | None = None,
        url: str | None = None,
        extra: dict | None = None,
        signature: str | None = None,
    ) -> tuple[int | None, str | None]:
        """POST a call-progress webhook like Twilio's; (None, None) when the callback was dropped."""
        timestamp = _now_rfc2822()
        with self._lock:
            call = self._calls[sid]
            res, params = call["resource"], call["params"]
            status = status or res["status"]
            url = url or params.get("StatusCallback")
            method = str(params.get("StatusCallbackMethod") or "POST").upper()
            call["sequence"] += 1
            form = {
                "CallSid": sid,
                "AccountSid": res["account_sid"],
                "From": res["from"],
                "To": res["to"],
                "Called": res["to"],
                "Caller": res["from"],
                "CallStatus": status,
                "Direction": "outbound-api",
                "ApiVersion": API_VERSION,
                "Timestamp": timestamp,
                "CallbackSource": "call-progress-events",
                "SequenceNumber": str(call["sequence"]),
            }
            if status == "completed":
                form["CallDuration"] = res["duration"] or "0"
            form.update(extra or {})
            dropped = self._chance(self.drop_callbacks)
        if not url:
            raise ValueError(f"call {sid} has no StatusCallback and no url was given")
        return self._deliver(url, form, res["account_sid"], method, signature, dropped, sid)

    def send_signed(
        self,
        url: str,
        params: dict,
        account_sid: str,
        method: str = "POST",
        signature: str | None = None,
    ) -> tuple[int, str]:
        """Send any webhook (e.g. an inbound call) signed with the account's token; pass `signature` to forge one."""
        return self._deliver(url, dict(params), account_sid, method.upper(), signature, False, None)

    def _deliver(self, url, form, account_sid, method, signature, dropped, sid):
        record = {"sid": sid, "url": url, "method": method, "params": form, "at": time.monotonic(), "dropped": dropped}
        with self._lock:
            self.callbacks.append(record)
        if dropped:
            return None, None
        form = FormParams(form)
        if method == "GET":
            # Twilio signs GET webhooks over the full URL, query string included, with no body params.
            sep = "&" if urllib.parse.urlsplit(url).query else "?"
            url = url + sep + urllib.parse.urlencode(form, doseq=True)
            data, sign_params = None, {}
        else:
            data, sign_params = urllib.parse.urlencode(form, doseq=True).encode(), form
        if signature is None:
            token = self.accounts[account_sid]
            validator = self._validators.get(token) or self._validators.setdefault(token, RequestValidator(token))
            signature = validator.compute_signature(url, sign_params)
        headers = {"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1"}
        if data is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        request.timeout = self.callback_timeout
        try:
            if self.callback_keep_alive and request.type in ("http", "https"):
                status, body = self._send(request)
            else:  # what urllib makes of it (an error)
                with _OPENER.open(request, timeout=self.callback_timeout) as response:
                    status, body = response.status, response.read()
        except urllib.error.HTTPError as err:
            status, body = err.code, err.read()
        record["response_status"] = status
        return status, body.decode("utf-8", "replace")

    def _send(self, request: urllib.request.Request) -> tuple[int, bytes]:
        """The request on this thread's kept-alive connection to its host (a new one if the server closed it), as
        urllib would send it but for `Connection: close`; redirects followed by urllib as before."""
        connections = self._senders.__dict__.setdefault("connections", {})
        key = (request.type, request.host)
        connection = connections.get(key)
        if connection is None:
            kind = http.client.HTTPSConnection if request.type == "https" else http.client.HTTPConnection
            connections[key] = connection = kind(request.host, timeout=request.timeout)
            with self._lock:
                self._sender_connections.append(connection)
        elif _closed_by_peer(connection):
            connection.close()  # and a new one below
        connection.timeout = request.timeout
        if connection.sock is not None and connection.sock.gettimeout() != request.timeout:
            connection.sock.settimeout(request.timeout)
        try:
            if connection.sock is None:  # new, or closed after an answer without keep-alive
                connection.connect()  # headers and body go out as two writes: no Nagle delay between them
                connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection.request(request.get_method(), request.selector or "/", request.data,
                               {name.title(): value for name, value in request.header_items()})
            if _QUICKACK:  # a server that writes headers and body apart, Nagle on, need not wait for our delayed ACK
                connection.sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            response = connection.getresponse()
            status, body = response.status, response.read()
        except BaseException:
            connection.close()
            raise
        if status in _REDIRECTS and ("location" in response.msg or "uri" in response.msg):
            with _REDIRECTOR.http_error_302(request, io.BytesIO(body), status, response.reason, response.msg) as followed:
                return followed.status, followed.read()
        return status, body

    # -- request handling (called from handler threads) -----------------------

    def _chance(self, ratio: bool | float) -> bool:
        # Caller holds the lock: the seeded Random is shared state.
        ratio = float(ratio)
        return ratio >= 1.0 or (ratio > 0.0 and self._rng.random() < ratio)

    def _authenticate(self, header: str | None, path_account: str) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, token = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        expected = self.accounts.get(user)
        return expected is not None and hmac.compare_digest(token, expected) and user == path_account

    def _take_rate_token(self, at: float) -> bool:
        # Token bucket: bursts up to max(1, rate) and refills at `rate` per second, by the requests' arrival
        # (which may take the lock in another order).
        if self.rate_limit_per_second is None:
            return True
        now = max(at, self._refilled_at)
        capacity = max(1.0, self.rate_limit_per_second)
        self._tokens = min(capacity, self._tokens + (now - self._refilled_at) * self.rate_limit_per_second)
        self._refilled_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def _create(self, account: str, auth: str | None, params: FormParams, at: float) -> tuple[int, dict, float]:
        """Returns (status, json body, seconds to wait before answering)."""
        record = {"account_sid": account, "params": params, "at": at, "sid": None}
        with self._lock:
            self.created_calls.append(record)
            status, body, delay = self._create_locked(account, auth, params, record)
            record["status_code"] = status
        return status, body, delay

    def _create_locked(self, account, auth, params, record):
        if not self._authenticate(auth, account):
            return 401, twilio_error(20003, "Authenticate", 401), 0.0
        if not self._take_rate_token(record["at"]):
            return 429, twilio_error(20429, "Too Many Requests", 429), 0.0
        to, from_ = params.get("To") or "", params.get("From") or ""
        url, twiml = params.get("Url") or "", params.get("Twiml") or ""
        if not to:
            return 400, twilio_error(21201, "No 'To' number is specified", 400), 0.0
        if not from_:
            return 400, twilio_error(21213, "No 'From' number is specified", 400), 0.0
        if not twiml and not params.get("ApplicationSid") and not re.match(r"^https?://", url):
            return 400, twilio_error(21205, f"Url is not a valid URL: {url}", 400), 0.0
        if to in self.refused_numbers:
            return 400, twilio_error(21215, f"Account not authorized to call {to}", 400), 0.0
        if self._chance(self.fail_ratio):
            return 500, twilio_error(20500, "Internal Server Error", 500), 0.0
        sid = "CA" + secrets.token_hex(16)
        now = _now_rfc2822()
        uri = f"/{API_VERSION}/Accounts/{account}/Calls/{sid}.json"
        resource = {
            "sid": sid,
            "date_created": now,
            "date_updated": now,
            "parent_call_sid": None,
            "account_sid": account,
            "to": to,
            "to_formatted": to,
            "from": from_,
            "from_formatted": from_,
            "phone_number_sid": None,
            "status": "queued",
            "start_time": None,
            "end_time": None,
            "duration": None,
            "price": None,
            "price_unit": "USD",
            "direction": "outbound-api",
            "answered_by": None,
            "annotation": None,
            "api_version": API_VERSION,
            "forwarded_from": None,
            "group_sid": None,
            "caller_name": None,
            "queue_time": "0",
            "trunk_sid": None,
            "uri": uri,
            "subresource_uris": {name: f"{uri[: -len('.json')]}/{camel}.json" for name, camel in _SUBRESOURCE_NAMES},
        }
        self._calls[sid] = {"resource": resource, "params": params, "sequence": 0}
        record["sid"] = sid
        # The call now exists even if the client never sees the answer (timeout or 500).
        delay = self.delay_seconds if self.delay_seconds and self._chance(self.delay_ratio) else 0.0
        if self._chance(self.fail_after_create):
            return 500, twilio_error(20500, "Internal Server Error", 500), delay
        return 201, dict(resource), delay

    def _fetch(self, account: str, sid: str, auth: str | None, path: str, at: float) -> tuple[int, dict]:
        with self._lock:
            record = {"account_sid": account, "sid": sid, "at": at}
            self.fetches.append(record)
            if not self._authenticate(auth, account):
                status, body = 401, twilio_error(20003, "Authenticate", 401)
            elif sid not in self._calls or self._calls[sid]["resource"]["account_sid"] != account:
                status, body = 404, twilio_error(20404, f"The requested resource {path} was not found", 404)
            else:
                status, body = 200, dict(self._calls[sid]["resource"])
            record["status_code"] = status
        return status, body


    def _list(self, account: str, auth: str | None, path: str, query: dict, at: float) -> tuple[int, dict]:
        """Twilio's list of calls, newest first; filters: To, From, Status; PageSize (no further pages)."""
        with self._lock:
            record = {"account_sid": account, "query": query, "at": at}
            self.lists.append(record)
            if not self._authenticate(auth, account):
                status, body = 401, twilio_error(20003, "Authenticate", 401)
            elif not self.list_supported:
                status, body = 404, twilio_error(20404, f"The requested resource {path} was not found", 404)
            else:
                wanted = {key.lower(): query[param] for key, param in (("to", "To"), ("from", "From"),
                                                                        ("status", "Status")) if param in query}
                size = int(query.get("PageSize", 50))
                calls = [dict(c["resource"]) for c in reversed(self._calls.values())
                         if c["resource"]["account_sid"] == account
                         and all(c["resource"][key] == value for key, value in wanted.items())][:size]
                uri = f"/{API_VERSION}/Accounts/{account}/Calls.json?PageSize={size}&Page=0"
                status, body = 200, {"calls": calls, "page": 0, "page_size": size, "start": 0,
                                     "end": max(0, len(calls) - 1), "uri": uri, "first_page_uri": uri,
                                     "next_page_uri": None, "previous_page_uri": None}
            record["status_code"] = status
        return status, body


# Answers that are not what a Twilio-compatible API gives: (status, content type, body, extra headers)
SECRET = "internal-secret-do-not-store"
BAD_ANSWERS = {
    "html_2xx": (200, "text/html", f"<html><body>admin console {SECRET}</body></html>", {}),
    "text_2xx": (201, "text/plain", f"OK {SECRET}", {}),
    "empty_2xx": (201, "application/json", "", {}),
    "json_2xx": (200, "application/json", json.dumps({"internal": SECRET, "keys": list(range(50))}), {}),
    "array_2xx": (200, "application/json", json.dumps([SECRET, 1, 2]), {}),
    "bad_sid_2xx": (201, "application/json", json.dumps({"sid": f"../{SECRET}", "status": "queued"}), {}),
    "html_4xx": (403, "text/html", f"<html><body>Forbidden {SECRET}</body></html>", {}),
    "problem_4xx": (400, "application/problem+json", json.dumps({
        "type": "https://www.twilio.com/docs/api/errors/21211", "title": "Invalid 'To' Phone Number",
        "status": 400, "code": 21211, "detail": "The number is not valid", "instance": "/Calls"}), {}),
    "problem_5xx": (503, "application/problem+json", json.dumps({
        "type": "about:blank", "title": "Service Unavailable", "status": "503", "code": "x"}), {}),
    "long_message_4xx": (400, "application/json", json.dumps({
        "code": 21210, "message": "x" * 100_000 + SECRET, "status": 400}), {}),
    "redirect": (302, "text/plain", "", {"Location": "/redirected"}),
}


# A header line the email parser reads as `Name: value` (its headerRE, a name of one character or more)
_PLAIN_HEADER = re.compile(rb"[\041-\071\073-\176]+:")


def _read_header_lines(rfile) -> list[bytes]:
    """The header lines up to the blank one (included), within http.client's limits and with its errors."""
    lines = []
    while True:
        line = rfile.readline(http.client._MAXLINE + 1)
        if len(line) > http.client._MAXLINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > http.client._MAXHEADERS:
            raise http.client.HTTPException(f"got more than {http.client._MAXHEADERS} headers")
        if line in (b"\r\n", b"\n", b""):
            return lines


def _closed_by_peer(connection: http.client.HTTPConnection) -> bool:
    """Whether an idle kept-alive connection has something to read: the server closed it (or broke the protocol)."""
    if connection.sock is None:
        return False  # http.client opens a new one
    poll = select.poll()
    poll.register(connection.sock, select.POLLIN)
    return bool(poll.poll(0))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head[0].upper() + head[1:] + "".join(p.capitalize() for p in rest)


_SUBRESOURCE_NAMES = tuple((name, _camel(name)) for name in _SUBRESOURCES)
# Linux: the kernel stamps each packet's arrival (the option's number where Python does not name it)
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform == "linux" else None)
_STAMP_SPACE = socket.CMSG_SPACE(16) if _SO_TIMESTAMPNS is not None else 0


class _Server(ThreadingHTTPServer):
    # A provider's edge takes every connection: with socketserver's 5 waiting to be accepted, a busy provider
    # process dropped connections, and their clients' requests came a second later (TCP's retry), many at once.
    request_queue_size = 128


def _arrival(connection: socket.socket) -> float:
    """When the connection's next request reached this machine, as time.monotonic(): the kernel's stamp of its
    first bytes (peeked, waiting for them), so that the provider's own delays (its threads and their GIL, its
    accept loop) are not counted as the client's, as a real provider counts requests at its edge. The time of the
    call when the stamp cannot be read. Clients here do not pipeline their requests."""
    if _SO_TIMESTAMPNS is not None:
        try:
            _data, ancillary, _flags, _address = connection.recvmsg(1, _STAMP_SPACE, socket.MSG_PEEK)
        except OSError:
            ancillary = []
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
                seconds, nanoseconds = struct.unpack("qq", data[:16])
                ago = time.time() - (seconds + nanoseconds / 1e9)
                if 0.0 <= ago < 60.0:  # not a packet the kernel left unstamped
                    return time.monotonic() - ago
    return time.monotonic()


class _Handler(BaseHTTPRequestHandler):
    provider: FakeProvider
    timeout = 10  # socket timeout so a stalled client cannot pin a handler thread (nor an idle connection)
    # HTTP/1.1 with keep_alive (as Twilio): the client's session sends its requests on one connection (every
    # answer has a Content-Length); an answer goes out in one write, headers and body together.
    protocol_version = "HTTP/1.0"
    wbufsize = -1
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        pass

    def handle(self):
        self.close_connection = True
        self.arrived_at = _arrival(self.connection)
        self.handle_one_request()
        while not self.close_connection and self._await_request():
            self.arrived_at = _arrival(self.connection)
            self.handle_one_request()

    def _await_request(self) -> bool:
        """Between two requests: the connection is idle (stop() closes it), or closed if the server is stopping."""
        provider = self.provider
        with provider._lock:
            if provider._stopping.is_set():
                return False
            provider._idle.add(self.connection)
            return True

    def parse_request(self) -> bool:
        """BaseHTTPRequestHandler's, without the email parser for plain `Name: value` header lines (most of a
        create's CPU); any other request line or header goes through the standard parsing."""
        if self.provider._idle:
            with self.provider._lock:
                self.provider._idle.discard(self.connection)
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = requestline.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1"):
            return super().parse_request()
        self.requestline, (self.command, self.path, self.request_version) = requestline, words
        self.close_connection = not (words[2] == "HTTP/1.1" and self.protocol_version >= "HTTP/1.1")
        if self.path.startswith("//"):  # as BaseHTTPRequestHandler (gh-87389)
            self.path = "/" + self.path.lstrip("/")
        try:
            lines = _read_header_lines(self.rfile)
        except http.client.LineTooLong as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", str(err))
            return False
        except http.client.HTTPException as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers", str(err))
            return False
        if all(_PLAIN_HEADER.match(line) for line in lines[:-1]):
            self.headers = headers = self.MessageClass()
            for line in lines[:-1]:
                name, value = str(line, "iso-8859-1").split(":", 1)
                headers.set_raw(name, value.lstrip(" \t").rstrip("\r\n"))  # as the email parser's compat32
        else:
            self.headers = email.parser.Parser(_class=self.MessageClass).parsestr(
                b"".join(lines).decode("iso-8859-1"))
        conntype = self.headers.get("Connection", "").lower()
        if conntype == "close":
            self.close_connection = True
        elif conntype == "keep-alive" and self.protocol_version >= "HTTP/1.1":
            self.close_connection = False
        if (self.headers.get("Expect", "").lower() == "100-continue" and self.protocol_version >= "HTTP/1.1"
                and self.request_version >= "HTTP/1.1"):
            return self.handle_expect_100()
        return True

    def finish(self):
        if self.connection in self.provider._idle:
            with self.provider._lock:
                self.provider._idle.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass  # the client is gone

    def _send_json(self, status: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="Twilio API"')
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            pass  # the client gave up (e.g. timed out during delay_seconds); that is the scenario under test

    def _not_found(self, path: str) -> None:
        self._send_json(404, twilio_error(20404, f"The requested resource {path} was not found", 404))

    def _bad_answer(self, path: str) -> bool:
        """Answer with the provider's switched-on bad answer, or a redirect's target; False: answer normally."""
        provider = self.provider
        if path.startswith("/redirected"):
            with provider._lock:
                provider.redirected.append({"method": self.command, "path": self.path,
                                            "authorization": self.headers.get("Authorization")})
            self._send_json(200, {"sid": "CA" + "f" * 32, "status": "queued", "note": SECRET})
            return True
        request = "create" if self.command == "POST" else "list" if _CALLS.match(path) else "fetch"
        kind = provider.bad_answer
        if kind is None or request not in provider.bad_answer_on:
            return False
        with provider._lock:
            provider.bad_answered.append({"request": request, "answer": kind,
                                          "authorization": self.headers.get("Authorization")})
            if kind == "repeat_sid":  # the resource of the last call made, as if it were a new one
                last = json.dumps(list(provider._calls.values())[-1]["resource"])
        status, content_type, body, headers = (201, "application/json", last, {}) if kind == "repeat_sid" \
            else BAD_ANSWERS[kind]
        payload = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        return True

    def do_POST(self):
        at = self.arrived_at
        path = urllib.parse.urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8") if length else ""
        if self._bad_answer(path):
            return
        match = _CALLS.match(path)
        if not match:
            return self._not_found(path)
        status, payload, delay = self.provider._create(
            match["account"], self.headers.get("Authorization"), parse_form(body), at
        )
        if delay:
            self.provider._stopping.wait(delay)
        self._send_json(status, payload)

    def do_GET(self):
        at = self.arrived_at
        path = urllib.parse.urlsplit(self.path).path
        if self._bad_answer(path):
            return
        if listing := _CALLS.match(path):
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            status, payload = self.provider._list(listing["account"], self.headers.get("Authorization"), path,
                                                  query, at)
            return self._send_json(status, payload)
        match = _CALL.match(path)
        if not match:
            return self._not_found(path)
        status, payload = self.provider._fetch(match["account"], match["sid"], self.headers.get("Authorization"), path, at)
        self._send_json(status, payload)


def twilio_client_for(
    server: FakeProvider, account_sid: str, auth_token: str | None = None, timeout: float = 5.0
) -> Client:
    """A real twilio Client whose api.twilio.com requests go to `server`."""
    token = auth_token if auth_token is not None else server.accounts[account_sid]
    http_client = TwilioHttpClient(timeout=timeout)
    # Environment proxies must not intercept 127.0.0.1.
    http_client.session.trust_env = False
    client = Client(account_sid, token, http_client=http_client)
    # TWILIO_EDGE / TWILIO_REGION in the environment would rewrite the host in get_hostname().
    client.edge = client.region = None
    client.api.base_url = server.url
    return client
