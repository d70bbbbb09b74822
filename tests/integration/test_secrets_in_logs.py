"""No secret in a log or a header (issue 9, case 3), and chunked bodies through a real socket (case 6).

A real `scfm serve` (granian), a real `scfm worker` and a real `scfm dialer` run as subprocesses with their
output captured; the test sends authenticated traffic of every kind, a PATCH with provider auth tokens, a
request that fails in the database and a call the dialer dials, then reads everything they printed.
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from tests.integration.conftest import PROVIDER_TOKEN
from tests.integration.test_phone_calls_api import DEMO

MIB = 1024 * 1024
TWILIO_TOKEN = "twilio-auth-token-of-the-tenant"
REFUSED_TOKEN = "auth-token-of-a-statement-that-failed"
LONG_SID_TOKEN = "auth-token-next-to-a-20000-character-sid"
SIP_PASSWORD = "sip-auth-password-in-remote-request-params"
LONG_SID = secrets.token_hex(10000)  # random: PostgreSQL cannot compress it into an index entry


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """An `scfm` command in its own process group, its stdout and stderr in one file."""

    def __init__(self, folder: Path, name: str, *args: str):
        self.log = folder / f"{name}.log"
        self._file = self.log.open("wb")
        self.popen = subprocess.Popen([sys.executable, "-m", "scfm.entrypoints.cli", *args], env=dict(os.environ),
                                      stdout=self._file, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> str:
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        self._file.close()
        return self.log.read_text(errors="replace")


@contextmanager
def serving(folder: Path):
    port = _free_port()
    server = Process(folder, "serve", "serve", "--port", str(port), "--workers", "1", "--threads", "2")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"{url}/api/openapi.json", timeout=2)
            break
        except requests.RequestException:
            if time.monotonic() > deadline or server.popen.poll() is not None:
                raise RuntimeError(f"scfm serve did not come up: {server.stop()}")
            time.sleep(0.2)
    output = {}
    try:
        yield url, output
    finally:
        output["text"] = server.stop()


def test_no_token_reaches_the_logs_of_a_real_server_and_worker(deps, admin, calling_api, provider, tmp_path,
                                                               monkeypatch):
    token, admin_token = calling_api.token, admin.token
    monkeypatch.setenv("SCFM_ALLOWED_PROVIDER_URLS", provider.url)  # the operator's list, for the processes too
    worker = Process(tmp_path, "worker", "worker")
    dialer = Process(tmp_path, "dialer", "dialer")
    try:
        with serving(tmp_path) as (url, server):
            basic = requests.Session()
            basic.auth = (token, "")
            assert basic.get(f"{url}/api/contacts").status_code == 200
            assert requests.get(f"{url}/api/contacts", headers={"Authorization": f"Bearer {token}"}).ok
            assert requests.get(f"{url}/api/contacts?access_token={token}&per_page=1").status_code == 200
            assert requests.get(f"{url}/api/contacts?access%5Ftoken={token}").status_code == 200
            assert requests.get(f"{url}/api/accounts", auth=(admin_token, "")).status_code == 200
            assert requests.get(f"{url}/api/contacts", headers={"Referer": f"{url}/x?access_token={token}"},
                                auth=(token, "")).ok
            assert basic.patch(f"{url}/api/account", data={
                "twilio_account_sid": "AC" + "9" * 32, "twilio_auth_token": TWILIO_TOKEN}).status_code == 204
            with deps.engine.begin() as conn:  # the next update fails in the database, token in hand
                conn.execute(text("ALTER TABLE accounts ADD CONSTRAINT scfm_test_refuses "
                                  "CHECK (metadata->>'refuse' IS NULL) NOT VALID"))
            try:
                refused = basic.patch(f"{url}/api/account",
                                      data={"metadata[refuse]": "yes", "twilio_auth_token": REFUSED_TOKEN})
            finally:
                with deps.engine.begin() as conn:
                    conn.execute(text("ALTER TABLE accounts DROP CONSTRAINT scfm_test_refuses"))
            assert refused.status_code >= 400

            contact = basic.post(f"{url}/api/contacts", data={"msisdn": "+252662345678"}).json()["id"]
            callout = basic.post(f"{url}/api/callouts").json()["id"]
            participation = basic.post(f"{url}/api/callouts/{callout}/callout_participations",
                                       data={"contact_id": contact}).json()["id"]
            call = basic.post(f"{url}/api/callout_participations/{participation}/phone_calls", data=DEMO).json()
            assert basic.post(f"{url}/api/phone_calls/{call['id']}/phone_call_events",
                              data={"event": "queue"}).status_code == 201
            deadline = time.monotonic() + 60
            while basic.get(f"{url}/api/phone_calls/{call['id']}").json()["status"] == "queued":
                assert time.monotonic() < deadline, "the dialer did not dial the call"
                time.sleep(0.2)
            assert basic.get(f"{url}/api/phone_calls/{call['id']}").json()["remote_call_id"]

            with deps.engine.begin() as conn:  # a dial whose outcome the database refuses to record
                conn.execute(text("ALTER TABLE phone_calls ADD CONSTRAINT scfm_test_refuses "
                                  "CHECK (remote_call_id IS NULL OR metadata->>'refuse' IS NULL) NOT VALID"))
            try:
                other = basic.post(f"{url}/api/contacts", data={"msisdn": "+252662345679"}).json()["id"]
                other = basic.post(f"{url}/api/callouts/{callout}/callout_participations",
                                   data={"contact_id": other}).json()["id"]
                refused_call = basic.post(f"{url}/api/callout_participations/{other}/phone_calls", data={
                    **DEMO, "remote_request_params[sip_auth_password]": SIP_PASSWORD,
                    "metadata[refuse]": "yes"}).json()
                assert basic.post(f"{url}/api/phone_calls/{refused_call['id']}/phone_call_events",
                                  data={"event": "queue"}).status_code == 201
                deadline = time.monotonic() + 60
                while "scfm_test_refuses" not in dialer.log.read_text(errors="replace"):
                    assert time.monotonic() < deadline, "the dialer did not try to record the dial"
                    time.sleep(0.2)
            finally:
                with deps.engine.begin() as conn:
                    conn.execute(text("ALTER TABLE phone_calls DROP CONSTRAINT scfm_test_refuses"))
            long_sid = basic.patch(f"{url}/api/account", json={  # the database once refused it, and logged it
                "somleng_account_sid": LONG_SID, "somleng_auth_token": LONG_SID_TOKEN})
    finally:
        worker_log = worker.stop() + dialer.stop()
    server_log = server["text"]

    assert "GET /api/contacts" in server_log and "database error" in server_log  # the logs were written
    assert "scfm_test_refuses" in worker_log
    for secret in (token, admin_token, TWILIO_TOKEN, REFUSED_TOKEN, LONG_SID_TOKEN, PROVIDER_TOKEN, SIP_PASSWORD,
                   LONG_SID[:100]):
        assert secret not in server_log, f"{secret[:20]}... in the server's log:\n{server_log[-3000:]}"
        assert secret not in worker_log, f"{secret[:20]}... in the worker's log:\n{worker_log[-3000:]}"
    assert long_sid.status_code == 422


def test_the_links_of_a_list_carry_no_access_token(app, api):
    for page in (1, 2, 3):
        api.post("/api/contacts", data={"msisdn": f"+25266234567{page}"})
    listing = app.test_client().get(f"/api/contacts?access_token={api.token}&per_page=1&page=2&q[msisdn]=x")
    assert listing.status_code == 422  # a bad filter: try again with a good one
    listing = app.test_client().get(f"/api/contacts?access_token={api.token}&access%5Ftoken={api.token}"
                                    "&per_page=1&page=2")
    assert listing.status_code == 200 and listing.headers["Total"] == "3"
    assert "access_token" not in listing.headers["Link"] and api.token not in listing.headers["Link"]
    assert 'per_page=1&page=3>; rel="next"' in listing.headers["Link"]


def _chunked_request(url: str, token: str, body: bytes) -> tuple[int, bytes]:
    """PATCH `body` with Transfer-Encoding: chunked, in 64 KiB chunks, over a plain socket."""
    import base64

    host, port = url.removeprefix("http://").split(":")
    auth = base64.b64encode(f"{token}:".encode()).decode()
    head = (f"PATCH /api/account HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        try:
            for start in range(0, len(body), 65536):
                chunk = body[start:start + 65536]
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading the rest: read its answer
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
        except ConnectionResetError:
            pass
    status_line = answer.split(b"\r\n", 1)[0]
    return int(status_line.split()[1]), answer


@pytest.mark.parametrize("size, status", [(MIB + 1, 413), (64, 204)])
def test_a_chunked_body_through_the_server_is_refused_whole_or_read_whole(admin, api, tmp_path, size, status):
    head, tail = b"metadata[pad]=", b"&metadata[last]=1"
    body = head + b"x" * (size - len(head) - len(tail)) + tail
    with serving(tmp_path) as (url, _server):
        code, answer = _chunked_request(url, api.token, body)
    assert code == status, answer[:500]
    metadata = api.get("/api/account").get_json()["metadata"]
    assert metadata == ({} if status == 413 else {"pad": "x" * (size - len(head) - len(tail)), "last": "1"})
