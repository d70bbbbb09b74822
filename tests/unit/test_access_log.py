"""`scfm serve`'s access log (scfm.entrypoints.serve.AccessLog): one line per request, no access token."""
from __future__ import annotations

import io

import pytest

from scfm.entrypoints.serve import AccessLog, scrub_query, scrub_url

TOKEN = "s3cr3t-access-token"


def _environ(**extra) -> dict:
    return {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/contacts", "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.7", "HTTP_USER_AGENT": "curl/8", "wsgi.input": io.BytesIO(b""), **extra}


def _serve(app, environ: dict, environment: dict | None = None) -> tuple[str, list, bytes]:
    stream, seen = io.StringIO(), []
    logged = AccessLog(app, stream, environment or {})
    body = b"".join(logged(environ, lambda status, headers, exc_info=None: seen.append((status, headers))))
    return stream.getvalue(), seen, body


def _ok(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


@pytest.mark.parametrize("query", [
    f"access_token={TOKEN}&page=2", f"page=2&access%5Ftoken={TOKEN}", f"access_token+={TOKEN}",
    f"a=1&%61ccess_token={TOKEN}&access_token={TOKEN}",
])
def test_no_access_token_in_the_request_line_or_the_referrer(query):
    line, seen, body = _serve(_ok, _environ(QUERY_STRING=query, HTTP_REFERER=f"http://x/dashboard?{query}",
                                            HTTP_AUTHORIZATION=f"Basic {TOKEN}"))
    assert seen[0][0] == "200 OK" and body == b"hello"
    assert TOKEN not in line and "[FILTERED]" in line
    assert line.count("\n") == 1 and line.startswith('10.0.0.7 - - [')


def test_a_line_in_gunicorns_default_format():
    line, _seen, _body = _serve(_ok, _environ(QUERY_STRING="phone_call_id=7"))
    head, _, rest = line.partition("] ")
    assert head.startswith("10.0.0.7 - - [")
    assert rest == '"GET /api/contacts?phone_call_id=7 HTTP/1.1" 200 5 "-" "curl/8"\n'


def test_a_client_cannot_break_the_line():
    line, _seen, _body = _serve(_ok, _environ(PATH_INFO="/a\nfake 200", HTTP_USER_AGENT="x\r\ny"))
    assert line.count("\n") == 1 and "\\n" in line and "\\r" in line


def test_an_exception_is_logged_as_a_500_and_raised():
    def failing(environ, start_response):
        raise RuntimeError("boom")

    stream = io.StringIO()
    with pytest.raises(RuntimeError):
        AccessLog(failing, stream, {})(_environ(), lambda *args: None)
    assert '"GET /api/contacts HTTP/1.1" 500 -' in stream.getvalue()


def test_variables_of_the_process_environment_are_no_request_headers():
    """granian builds every environ over a copy of os.environ: HTTP_PROXY there is no `Proxy:` header sent."""
    environment = {"HTTP_PROXY": "http://proxy:3128", "CONTENT_TYPE": "text/csv", "HOME": "/root"}
    seen_environ = {}

    def app(environ, start_response):
        seen_environ.update(environ)
        return _ok(environ, start_response)

    _serve(app, {**environment, **_environ(HTTP_X_FORWARDED_HOST="a.example")}, environment)
    assert "HTTP_PROXY" not in seen_environ and "CONTENT_TYPE" not in seen_environ
    assert seen_environ["HTTP_X_FORWARDED_HOST"] == "a.example"
    _serve(app, {**environment, **_environ(CONTENT_TYPE="application/json")}, environment)
    assert seen_environ["CONTENT_TYPE"] == "application/json"  # the client's own, kept


def test_no_request_carries_the_process_environment_and_its_secrets():
    """granian's environ copies os.environ: the database URL and the provider's token are no part of a request."""
    environment = {"DATABASE_URL": "postgresql://scfm:secret@db/scfm", "TWILIO_AUTH_TOKEN": "secret",
                   "SERVER_NAME": "from-the-environment", "PATH_INFO": "/elsewhere"}
    seen_environ = {}

    def app(environ, start_response):
        seen_environ.update(environ)
        return _ok(environ, start_response)

    _serve(app, {**environment, **_environ(SERVER_NAME="api.example")}, environment)
    assert "DATABASE_URL" not in seen_environ and "TWILIO_AUTH_TOKEN" not in seen_environ
    # what the server set for the request is kept
    assert seen_environ["PATH_INFO"] == "/api/contacts" and seen_environ["SERVER_NAME"] == "api.example"


def test_scrub_helpers():
    assert scrub_query("page=2") == "page=2"
    assert scrub_query(f"access_token={TOKEN}") == "access_token=[FILTERED]"
    assert scrub_url(f"/a?b=1&access_token={TOKEN}") == "/a?b=1&access_token=[FILTERED]"
    assert scrub_url("/a") == "/a"
