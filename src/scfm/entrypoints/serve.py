"""`scfm serve`: the API under granian (a Rust HTTP server, WSGI interface), with our own access log.

granian parses HTTP and keeps connections in Rust and hands requests to a pool of Python threads per worker
process: per signed status callback, the server's processes spent 1.5x less CPU than under gunicorn (whose
HTTP parsing, connection hand-off between threads and access log are Python; docs/behaviour.md). granian's
own access log goes through `logging` per request; ours writes one line per request straight to stdout,
without access tokens: no Basic user name (the token), `?access_token=` filtered out of the request line and
the referrer, no request header but the user agent.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Callable, Iterable, Mapping
from urllib.parse import unquote_plus

FILTERED = "[FILTERED]"

# The CGI variables and request headers of a WSGI environ. granian builds each request's environ over a copy
# of the process's environment (CGI's way): a variable of that name in the environment would look like a
# header the client sent, when the request has none.
_REQUEST_KEYS = ("CONTENT_TYPE", "CONTENT_LENGTH", "REMOTE_USER", "AUTH_TYPE")
# the names the server sets for each request itself (it overrides a variable of the environment so named)
_CGI_KEYS = frozenset(("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT",
                       "SERVER_PROTOCOL", "SERVER_SOFTWARE", "GATEWAY_INTERFACE", "REMOTE_ADDR", "REMOTE_PORT",
                       "REMOTE_HOST", "RAW_URI", "REQUEST_URI"))


def scrub_query(query: str) -> str:
    """The query string with the value of every `access_token` (however its name is encoded) filtered out."""
    if "access_token" not in query and "%" not in query and "+" not in query:
        return query
    pairs = query.split("&")
    for index, pair in enumerate(pairs):
        name, equals, _value = pair.partition("=")
        if unquote_plus(name).strip() == "access_token":
            pairs[index] = f"{name}{equals}{FILTERED}"
    return "&".join(pairs)


def scrub_url(url: str) -> str:
    path, question, query = url.partition("?")
    return f"{path}{question}{scrub_query(query)}" if question else url


class _Clock:
    """The access log's timestamp ([01/Dec/2026:05:36:52 +0000], as gunicorn's), formatted once a second."""

    def __init__(self):
        self.second, self.text = -1, ""

    def now(self) -> str:
        second = int(time.time())
        if second != self.second:
            self.text = time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(second))
            self.second = second
        return self.text


class AccessLog:
    """WSGI middleware: one line per request on `stream`, in gunicorn's default format
    (`addr - - [time] "METHOD /path?query PROTOCOL" status length "referrer" "user agent"`), with no
    access token in it; and the request's environ without variables of the process's environment that
    look like request headers."""

    def __init__(self, app: Callable, stream=None, environment: Mapping[str, str] | None = None):
        self.app, self.stream, self.lock, self.clock = app, stream or sys.stdout, threading.Lock(), _Clock()
        variables = os.environ if environment is None else environment
        self.foreign = {name: value for name, value in variables.items()
                        if name.startswith("HTTP_") or name in _REQUEST_KEYS}
        # the rest of the process's environment (the database's URL, the provider's auth token, the secret key)
        # is no part of a request either: no request's environ carries it, to wherever an environ is shown
        self.process_only = [name for name in variables
                             if name not in self.foreign and name not in _CGI_KEYS and not name.startswith("wsgi.")]

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        for name, value in self.foreign.items():
            if environ.get(name) == value:
                del environ[name]
        for name in self.process_only:
            environ.pop(name, None)
        seen: list = []

        def starting(status, headers, exc_info=None):
            seen[:] = [status, headers]
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        try:
            body = self.app(environ, starting)
        except BaseException:
            self.log(environ, "500", None)
            raise
        status, headers = seen or ("500", [])
        length = None
        if isinstance(body, list):
            length = sum(map(len, body))
        else:
            for name, value in headers:
                if name.lower() == "content-length":
                    length = value
        self.log(environ, status.split(" ", 1)[0], length)
        return body

    def log(self, environ: dict, status: str, length) -> None:
        query = environ.get("QUERY_STRING", "")
        target = environ.get("PATH_INFO", "")
        if query:
            target = f"{target}?{scrub_query(query)}"
        referrer = environ.get("HTTP_REFERER")
        line = (f'{environ.get("REMOTE_ADDR", "-")} - - {self.clock.now()} '
                f'"{environ.get("REQUEST_METHOD", "-")} {_printable(target)} {environ.get("SERVER_PROTOCOL", "-")}" '
                f'{status} {"-" if length is None else length} '
                f'"{_printable(scrub_url(referrer)) if referrer else "-"}" '
                f'"{_printable(environ.get("HTTP_USER_AGENT", "-"))}"\n')
        with self.lock:
            try:
                self.stream.write(line)
                self.stream.flush()
            except (OSError, ValueError):  # stdout gone: the request is still answered
                pass


def _printable(text: str) -> str:
    """No line breaks or control characters of a client's in the log."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
