"""Tests of the fake Twilio server, driven through the real twilio client."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator

from tests.support.fake_provider import FakeProvider, FormParams, parse_form, twilio_client_for

SID = "AC" + "1" * 32
TOKEN = "secret-token"
OTHER_SID = "AC" + "2" * 32
OTHER_TOKEN = "other-token"
TO, FROM = "+15005550006", "+15005550001"
ANSWER_URL = "https://example.test/answer"


@pytest.fixture
def provider():
    with FakeProvider({SID: TOKEN, OTHER_SID: OTHER_TOKEN}, seed=1) as server:
        yield server


@pytest.fixture
def client(provider):
    return twilio_client_for(provider, SID)


class Receiver:
    """Captures webhooks on 127.0.0.1; answers 200 with empty TwiML."""

    def __init__(self):
        self.requests: list[dict] = []
        self.received = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 5

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                payload = b"<Response/>"
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                receiver.received.set()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def create(client, **kwargs):
    kwargs.setdefault("url", ANSWER_URL)
    return client.calls.create(to=kwargs.pop("to", TO), from_=kwargs.pop("from_", FROM), **kwargs)


def test_url_and_context_manager_lifecycle():
    server = FakeProvider({SID: TOKEN})
    with server:
        assert server.url.startswith("http://127.0.0.1:")
        port = int(server.url.rsplit(":", 1)[1])
        assert port > 0
    with pytest.raises(RuntimeError):
        server.url
    server.stop()  # idempotent


def test_create_call_returns_201_with_queued_resource(provider, client):
    call = create(
        client,
        status_callback="https://example.test/status",
        status_callback_event=["initiated", "ringing", "answered", "completed"],
        status_callback_method="POST",
        timeout=30,
        machine_detection="Enable",
    )

    assert client.http_client._test_only_last_response.status_code == 201
    assert call.sid.startswith("CA") and len(call.sid) == 34
    int(call.sid[2:], 16)
    assert call.status == "queued"
    assert call.to == TO and call._from == FROM
    assert call.account_sid == SID
    assert call.direction == "outbound-api"
    assert call.api_version == "2010-04-01"
    assert call.date_created is not None and call.start_time is None and call.duration is None
    assert call.uri == f"/2010-04-01/Accounts/{SID}/Calls/{call.sid}.json"
    assert call.subresource_uris["recordings"].endswith(f"/Calls/{call.sid}/Recordings.json")

    [record] = provider.created_calls
    assert record["sid"] == call.sid and record["account_sid"] == SID and record["status_code"] == 201
    params = record["params"]
    assert params["To"] == TO and params["From"] == FROM and params["Url"] == ANSWER_URL
    assert params["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert params["Timeout"] == "30" and params["MachineDetection"] == "Enable"
    assert provider.create_timestamps() == [record["at"]]


def test_a_create_is_stamped_when_its_first_bytes_arrive_not_when_the_provider_reads_it():
    import base64
    import socket
    import urllib.parse

    body = f"To={TO}&From={FROM}&Url=https%3A%2F%2Fexample.test%2Fanswer".encode()
    auth = base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    head = (f"POST /2010-04-01/Accounts/{SID}/Calls.json HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with FakeProvider({SID: TOKEN}, keep_alive=True) as provider:
        address = urllib.parse.urlsplit(provider.url)
        sent = []
        with socket.create_connection((address.hostname, address.port)) as connection:
            for _ in range(2):  # on a new connection, then on the same one kept alive
                time.sleep(0.3)  # the provider waits for the request
                sent.append(time.monotonic())
                connection.sendall(head[:10])
                time.sleep(0.3)  # the rest of the request comes later: the provider reads it then
                connection.sendall(head[10:] + body)
                answer = connection.makefile("rb")
                assert answer.readline().startswith(b"HTTP/1.1 201")
                headers = list(iter(answer.readline, b"\r\n"))
                answer.read(next(int(line.split(b":")[1]) for line in headers
                                 if line.lower().startswith(b"content-length:")))
        assert [record["status_code"] for record in provider.created_calls] == [201, 201]
        for record, at in zip(provider.created_calls, sent):
            assert at <= record["at"] < at + 0.15


def test_the_adapter_sends_no_create_when_its_slot_has_passed_at_the_last_moment(provider):
    from scfm.adapters.provider import TwilioProvider
    from scfm.domain.ports import ProviderCredentials, SlotMissed

    adapter, credentials = TwilioProvider(timeout=5), ProviderCredentials("somleng", SID, TOKEN, provider.url)
    params = {"from": FROM, "url": ANSWER_URL}
    with pytest.raises(SlotMissed):
        adapter.create_call(credentials, TO, params, on_time=lambda: False)
    assert provider.created_calls == []
    remote = adapter.create_call(credentials, TO, params, on_time=lambda: True)
    assert [record["sid"] for record in provider.created_calls] == [remote.sid]
    adapter.create_call(credentials, TO, params)  # asked no more once the create is made
    assert len(provider.created_calls) == 2


def test_the_adapter_asks_whether_it_is_on_time_once_connected_and_then_sends_nothing_late():
    import socket

    from scfm.adapters.provider import TwilioProvider
    from scfm.domain.ports import ProviderCredentials, SlotMissed

    listener = socket.create_server(("127.0.0.1", 0))
    accepted, received = threading.Event(), []

    def serve() -> None:
        connection, _ = listener.accept()
        accepted.set()
        with connection:
            received.append(connection.recv(100))  # b"": closed with nothing sent

    server = threading.Thread(target=serve)
    server.start()
    credentials = ProviderCredentials("somleng", SID, TOKEN, f"http://127.0.0.1:{listener.getsockname()[1]}")
    asked = []
    with pytest.raises(SlotMissed):  # a new connection's handshake is not the request's way: asked after it
        TwilioProvider(timeout=5).create_call(credentials, TO, {"from": FROM, "url": ANSWER_URL},
                                              on_time=lambda: asked.append(accepted.wait(5)) or False)
    server.join(5)
    listener.close()
    assert asked == [True] and received == [b""]


def test_create_with_twiml_instead_of_url(client):
    call = client.calls.create(to=TO, from_=FROM, twiml="<Response><Say>hi</Say></Response>")
    assert call.status == "queued"


def test_fetch_reflects_set_status(provider, client):
    sid = create(client).sid
    assert client.calls(sid).fetch().status == "queued"

    provider.set_status(sid, "in-progress")
    fetched = client.calls(sid).fetch()
    assert fetched.status == "in-progress" and fetched.start_time is not None

    provider.set_status(sid, "completed", duration=42)
    fetched = client.calls(sid).fetch()
    assert fetched.status == "completed"
    assert fetched.duration == "42"
    assert fetched.end_time is not None
    assert [f["status_code"] for f in provider.fetches] == [200, 200, 200]
    assert provider.call(sid)["status"] == "completed"

    with pytest.raises(ValueError):
        provider.set_status(sid, "exploded")


def test_fetch_unknown_sid_is_404(client):
    with pytest.raises(TwilioRestException) as exc:
        client.calls("CA" + "0" * 32).fetch()
    assert exc.value.status == 404 and exc.value.code == 20404


def test_fetch_other_accounts_call_is_404(provider, client):
    sid = create(client).sid
    other = twilio_client_for(provider, OTHER_SID)
    with pytest.raises(TwilioRestException) as exc:
        other.calls(sid).fetch()
    assert exc.value.status == 404


@pytest.mark.parametrize(
    "sid, token",
    [(SID, "wrong-token"), ("AC" + "9" * 32, TOKEN), (SID, OTHER_TOKEN)],
)
def test_wrong_credentials_are_401(provider, sid, token):
    client = twilio_client_for(provider, sid, token)
    with pytest.raises(TwilioRestException) as exc:
        create(client)
    assert exc.value.status == 401
    assert exc.value.code == 20003
    assert "Authenticate" in exc.value.msg
    assert provider.calls() == []


def test_raw_401_body_has_twilio_error_shape(provider):
    response = requests.post(
        f"{provider.url}/2010-04-01/Accounts/{SID}/Calls.json",
        data={"To": TO, "From": FROM, "Url": ANSWER_URL},
        auth=(SID, "nope"),
        timeout=5,
    )
    assert response.status_code == 401
    assert response.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }


@pytest.mark.parametrize(
    "kwargs, code",
    [
        ({"to": ""}, 21201),
        ({"from_": ""}, 21213),
        ({"url": None}, 21205),
        ({"url": "not-a-url"}, 21205),
    ],
)
def test_bad_params_are_400_with_code(provider, client, kwargs, code):
    with pytest.raises(TwilioRestException) as exc:
        create(client, **kwargs)
    assert exc.value.status == 400
    assert exc.value.code == code
    assert provider.calls() == []
    assert provider.created_calls[0]["status_code"] == 400


def test_refused_number_is_400_21215():
    with FakeProvider({SID: TOKEN}, refused_numbers=["+2250700000000"]) as server:
        client = twilio_client_for(server, SID)
        with pytest.raises(TwilioRestException) as exc:
            create(client, to="+2250700000000")
        assert exc.value.status == 400 and exc.value.code == 21215
        assert "+2250700000000" in exc.value.msg
        assert create(client).status == "queued"


def test_rate_limit_answers_429_above_the_rate():
    with FakeProvider({SID: TOKEN}, rate_limit_per_second=2) as server:
        client = twilio_client_for(server, SID)
        outcomes = []
        for _ in range(8):
            try:
                create(client)
                outcomes.append(201)
            except TwilioRestException as exc:
                assert exc.code == 20429
                outcomes.append(exc.status)
        assert outcomes[:2] == [201, 201]
        assert 429 in outcomes
        assert len(server.calls()) == outcomes.count(201)
        assert len(server.create_timestamps()) == 8

        time.sleep(0.6)  # refill at 2/s gives one token
        assert create(client).status == "queued"


def test_fail_ratio_one_always_500_and_creates_nothing():
    with FakeProvider({SID: TOKEN}, fail_ratio=1.0, seed=3) as server:
        with pytest.raises(TwilioRestException) as exc:
            create(twilio_client_for(server, SID))
        assert exc.value.status == 500
        assert server.calls() == []


def test_fail_ratio_is_reproducible_with_seed():
    def run():
        with FakeProvider({SID: TOKEN}, fail_ratio=0.5, seed=42) as server:
            client = twilio_client_for(server, SID)
            out = []
            for _ in range(12):
                try:
                    create(client)
                    out.append(201)
                except TwilioRestException as exc:
                    out.append(exc.status)
            return out

    first = run()
    assert first == run()
    assert set(first) == {201, 500}


def test_fail_after_create_records_call_but_answers_500():
    with FakeProvider({SID: TOKEN}, fail_after_create=True) as server:
        with pytest.raises(TwilioRestException) as exc:
            create(twilio_client_for(server, SID))
        assert exc.value.status == 500
        [record] = server.created_calls
        assert record["sid"] is not None and record["status_code"] == 500
        assert server.call(record["sid"])["status"] == "queued"


def test_delay_makes_client_time_out_but_call_exists():
    with FakeProvider({SID: TOKEN}, delay_seconds=5) as server:
        client = twilio_client_for(server, SID, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(requests.exceptions.Timeout):
            create(client)
        assert time.monotonic() - started < 3
        [record] = server.created_calls
        assert server.call(record["sid"])["status"] == "queued"
    # stop() woke the sleeping handler instead of waiting the full delay
    assert time.monotonic() - started < 3


def _validate(token, url, request):
    return RequestValidator(token).validate(url, parse_form(request["body"]), request["headers"]["X-Twilio-Signature"])


def test_status_callback_is_signed_and_shaped_like_twilio(provider, client, receiver):
    callback_url = receiver.url + "/twilio/status?attempt=1"
    sid = create(client, status_callback=callback_url).sid
    provider.set_status(sid, "completed", duration=17)

    status, body = provider.send_status_callback(sid, extra={"AnsweredBy": "human"})

    assert (status, body) == (200, "<Response/>")
    [request] = receiver.requests
    assert request["path"] == "/twilio/status?attempt=1"
    assert request["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    params = parse_form(request["body"])
    assert params["CallSid"] == sid and params["AccountSid"] == SID
    assert params["To"] == TO and params["From"] == FROM
    assert params["CallStatus"] == "completed" and params["CallDuration"] == "17"
    assert params["Direction"] == "outbound-api" and params["ApiVersion"] == "2010-04-01"
    assert params["AnsweredBy"] == "human"
    assert _validate(TOKEN, callback_url, request)
    assert not _validate(OTHER_TOKEN, callback_url, request)
    assert not _validate(TOKEN, receiver.url + "/twilio/other", request)
    assert provider.callbacks[0]["response_status"] == 200


def test_status_callback_to_explicit_url_with_explicit_status(provider, client, receiver):
    sid = create(client).sid
    status, _ = provider.send_status_callback(sid, status="ringing", url=receiver.url + "/cb")
    assert status == 200
    params = parse_form(receiver.requests[0]["body"])
    assert params["CallStatus"] == "ringing" and "CallDuration" not in params
    assert _validate(TOKEN, receiver.url + "/cb", receiver.requests[0])


def test_status_callback_without_any_url_raises(provider, client):
    sid = create(client).sid
    with pytest.raises(ValueError):
        provider.send_status_callback(sid)


def test_dropped_callbacks_are_not_sent(receiver):
    with FakeProvider({SID: TOKEN}, drop_callbacks=True) as server:
        sid = create(twilio_client_for(server, SID), status_callback=receiver.url + "/cb").sid
        assert server.send_status_callback(sid, status="completed") == (None, None)
        assert server.callbacks[0]["dropped"] is True
    assert not receiver.received.wait(0.2)
    assert receiver.requests == []


def test_send_signed_inbound_webhook_and_forged_signature(provider, receiver):
    url = receiver.url + "/twilio/voice"
    params = {"CallSid": "CA" + "3" * 32, "AccountSid": SID, "From": FROM, "To": TO, "CallStatus": "ringing",
              "Direction": "inbound", "Digits": ["1", "2"]}

    assert provider.send_signed(url, params, SID)[0] == 200
    assert provider.send_signed(url, params, SID, signature="forged")[0] == 200

    good, forged = receiver.requests
    assert parse_form(good["body"])["Digits"] == ["1", "2"]
    assert _validate(TOKEN, url, good)
    assert forged["headers"]["X-Twilio-Signature"] == "forged"
    assert not _validate(TOKEN, url, forged)


def test_form_params_getlist():
    form = FormParams({"a": "1", "b": ["2", "3"]})
    assert form.getlist("a") == ["1"] and form.getlist("b") == ["2", "3"]


def test_a_client_keeps_its_connection_and_stop_closes_it():
    """Creates come on one kept-alive connection, as with Twilio; a stopped provider answers nothing more on it,
    and the client's next request reaches the provider started in its place."""
    first = FakeProvider({SID: TOKEN}, keep_alive=True).start()
    port = int(first.url.rsplit(":", 1)[1])
    accepted = []
    process_request = first._httpd.process_request
    first._httpd.process_request = lambda request, address: (accepted.append(address), process_request(request, address))
    client = twilio_client_for(first, SID)
    create(client)
    create(client)
    assert len(accepted) == 1 and len(first.created_calls) == 2
    first.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        create(client)
    with FakeProvider({SID: TOKEN}, port=port, keep_alive=True) as second:
        create(client)
        assert len(second.created_calls) == 1 and len(first.created_calls) == 2


def test_callbacks_keep_their_connection_to_an_http11_receiver(provider, client):
    """Status callbacks from one thread go out on one connection to a server that keeps it alive."""
    provider.callback_keep_alive = True
    connections, requests_seen = set(), []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 5

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            connections.add(self.client_address)
            requests_seen.append((dict(self.headers), body))
            self.send_response(200)
            self.send_header("Content-Length", "11")
            self.end_headers()
            self.wfile.write(b"<Response/>")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = "http://127.0.0.1:%d/cb" % httpd.server_address[1]
        sid = create(client, status_callback=url).sid
        answers = [provider.send_status_callback(sid, status=status) for status in ("ringing", "in-progress")]
        assert answers == [(200, "<Response/>")] * 2
        assert len(connections) == 1 and len(requests_seen) == 2
        for headers, body in requests_seen:
            assert RequestValidator(TOKEN).validate(url, parse_form(body), headers["X-Twilio-Signature"])
            assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _raw(provider, request: bytes) -> bytes:
    import socket
    host, port = provider.url[len("http://"):].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):  # the provider closes the connection after these answers
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("keep_alive", [False, True])
def test_raw_requests_parsed_as_the_standard_handler(keep_alive):
    with FakeProvider({SID: TOKEN}, keep_alive=keep_alive) as provider:
        _raw_requests(provider)


def _raw_requests(provider):
    import base64
    auth = base64.b64encode(f"{SID}:{TOKEN}".encode())
    path = f"/2010-04-01/Accounts/{SID}/Calls/CA{'0' * 32}.json".encode()
    # HTTP/1.0, a folded header line: parsed by the email parser, the connection closed after the answer
    answer = _raw(provider, b"GET " + path + b" HTTP/1.0\r\nX-Folded: a\r\n b\r\nAuthorization: Basic " + auth + b"\r\n\r\n")
    assert answer[:13] in (b"HTTP/1.1 404 ", b"HTTP/1.0 404 ") and b"20404" in answer
    # too many headers: 431, as BaseHTTPRequestHandler answers
    answer = _raw(provider, b"GET " + path + b" HTTP/1.1\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n")
    assert answer[:13] in (b"HTTP/1.1 431 ", b"HTTP/1.0 431 ")
    # Connection: close on HTTP/1.1 closes it too
    answer = _raw(provider, b"GET " + path + b" HTTP/1.1\r\nConnection: close\r\nAuthorization: Basic " + auth + b"\r\n\r\n")
    assert answer[:13] in (b"HTTP/1.1 404 ", b"HTTP/1.0 404 ")
