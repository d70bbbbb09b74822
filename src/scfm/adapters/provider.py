"""Twilio and Somleng through the `twilio` client: Somleng is the same API at another base URL."""
from __future__ import annotations

import base64
import hmac
import json
import logging
import re
import threading
from datetime import datetime
from typing import Any, Callable
from urllib.parse import urlencode, urlparse

import certifi
import requests
import urllib3
import urllib3.connection
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http import HttpClient
from twilio.http.response import Response
from twilio.request_validator import add_port, remove_port
from twilio.rest import Client

from scfm.domain.ports import (
    OutcomeUnknown, ProviderCredentials, ProviderRateLimited, ProviderRefused, ProviderUnreachable, RemoteCall,
    SlotMissed,
)

RATE_LIMITED_CODE = 20429
MAX_MESSAGE = 500  # characters of a provider's error text kept in remote_error_message
MAX_VALUE = 1000  # characters of one value of a call resource
# A Twilio call resource, as stored in remote_response/remote_queue_response: these keys and nothing else
CALL_RESOURCE_KEYS = frozenset({
    "sid", "date_created", "date_updated", "parent_call_sid", "account_sid", "to", "to_formatted", "from",
    "from_formatted", "phone_number_sid", "status", "start_time", "end_time", "duration", "price", "price_unit",
    "direction", "answered_by", "annotation", "api_version", "forwarded_from", "group_sid", "caller_name",
    "queue_time", "trunk_sid", "uri", "subresource_uris",
})
_SID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # Twilio's CA…, Somleng's UUIDs
# twilio's client logs every request and answer at INFO (the called number, the callback URL): eight lines a
# call; ours logs nothing of them
_twilio_log = logging.getLogger("twilio.http_client")
_STATUS = re.compile(r"^[a-z][a-z-]{0,31}$")


_sending = threading.local()  # the `on_time` of the request this thread is sending, for its connection


def _on_time_once_connected(connection: Any) -> None:
    """Asked by the connection right before it sends a request: connected first (a new connection's handshake,
    and TLS's, are not the request's way to the provider), then `on_time`; SlotMissed leaves nothing sent."""
    on_time = getattr(_sending, "on_time", None)
    if on_time is None:
        return
    if connection.sock is None:
        connection.connect()
    if not on_time():
        raise SlotMissed("the request would have left too late for its slot")


class _Connection(urllib3.connection.HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _on_time_once_connected(self)
        super().request(*args, **kwargs)


class _TLSConnection(urllib3.connection.HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _on_time_once_connected(self)
        super().request(*args, **kwargs)


class _Pool(urllib3.HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


class RecordingHttpClient(HttpClient):
    """twilio's HTTP client on urllib3 alone (a kept-alive connection per thread and provider), with requests'
    exceptions, so that what went wrong is told as before; it keeps the provider's answer to the last request,
    to check it is a call resource before storing it. Redirects are never followed, nor a request ever retried
    (a create sent twice may call twice): credentials and requests go to the configured URL and nowhere else.
    requests' session, which twilio's own client uses, costs a third of the dialer's CPU at 200 calls/s.
    `on_time`, when set, is asked by the connection right before it sends the request, once connected (see
    CallProvider.create_call)."""

    answer: Response | None = None
    on_time: Callable[[], bool] | None = None

    def __init__(self, timeout: float):
        super().__init__(_twilio_log, False, timeout)
        self.pools = urllib3.PoolManager(num_pools=4, maxsize=1, retries=False, cert_reqs="CERT_REQUIRED",
                                         ca_certs=certifi.where())
        self.pools.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}

    def request(self, method: str, url: str, params: Any = None, data: Any = None, headers: Any = None,
                auth: Any = None, timeout: float | None = None, allow_redirects: bool = False) -> Response:
        self.answer = None
        headers = dict(headers or {})
        if auth:
            credentials = f"{auth[0]}:{auth[1]}".encode("latin1")
            headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
        body = None
        if data is not None and headers.get("Content-Type") in ("application/json", "application/scim+json"):
            body = json.dumps(data).encode()
        elif data:
            body = _form(data).encode()
        if params and (query := _form(params)):
            url += ("&" if "?" in url else "?") + query
        seconds, url = timeout or self.timeout, _checked(url)
        _sending.on_time = self.on_time
        try:
            answer = self.pools.request(method.upper(), url, body=body, headers=headers, redirect=False,
                                        retries=False, timeout=urllib3.Timeout(connect=seconds, read=seconds))
        except urllib3.exceptions.NewConnectionError as error:  # refused, or the name not found: nothing sent
            raise requests.ConnectionError(error) from None
        except urllib3.exceptions.ConnectTimeoutError as error:
            raise requests.ConnectTimeout(error) from None
        except urllib3.exceptions.ReadTimeoutError as error:
            raise requests.ReadTimeout(error) from None
        except urllib3.exceptions.SSLError as error:
            raise requests.exceptions.SSLError(error) from None
        except urllib3.exceptions.LocationParseError as error:
            raise requests.exceptions.InvalidURL(error) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:  # reset or cut off: the request may have landed
            raise requests.ConnectionError(error) from None
        finally:
            _sending.on_time = None
        charset = answer.headers.get("Content-Type", "").partition("charset=")[2].split(";")[0].strip() or "utf-8"
        try:
            text = answer.data.decode(charset, "replace")
        except LookupError:
            text = answer.data.decode("utf-8", "replace")
        self.answer = Response(answer.status, text, answer.headers)
        return self.answer


def _form(values: Any) -> str:
    """Form encoding as requests does it: a list value repeats its key; a None is left out."""
    pairs = values.items() if hasattr(values, "items") else values
    return urlencode([(key, value) for key, value in pairs if value is not None], doseq=True)


def _checked(url: str) -> str:
    """requests' refusals of a URL that cannot be asked (nothing is sent)."""
    scheme, _, rest = url.partition("://")
    if not rest:
        raise requests.exceptions.MissingSchema(f"Invalid URL {url!r}: No scheme supplied")
    if scheme.lower() not in ("http", "https"):
        raise requests.exceptions.InvalidSchema(f"No connection adapters were found for {url!r}")
    if not urlparse(url).hostname:
        raise requests.exceptions.InvalidURL(f"Invalid URL {url!r}: No host supplied")
    return url


def _client(credentials: ProviderCredentials, timeout: float) -> Client:
    http_client = RecordingHttpClient(timeout=timeout)
    client = Client(credentials.account_sid, credentials.auth_token, http_client=http_client)
    client.edge = client.region = None
    if credentials.base_url:
        client.api.base_url = credentials.base_url.rstrip("/")
    return client


def _kwargs(params: dict) -> dict:
    kwargs = {("from_" if key == "from" else key): value for key, value in params.items()}
    return kwargs


def bounded(text, limit: int = MAX_MESSAGE) -> str:
    """A provider's text as one printable line of at most `limit` characters."""
    text = str(text)
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe(answer) -> str:
    """What an answer was, without its body: the body may be anything (an internal page, a secret)."""
    if answer is None:
        return "no answer"
    kind = bounded(((answer.headers or {}).get("Content-Type") or "no content type").split(";")[0], 100)
    return f"HTTP {answer.status_code}, {kind}, {len(answer.text or '')} characters"


class NotACallResource(Exception):
    pass


def call_resource(body) -> dict:
    """The answer's call resource, limited to a Twilio call resource's keys; NotACallResource otherwise."""
    if not isinstance(body, dict) or not isinstance(body.get("sid"), str) or not _SID.match(body["sid"]):
        raise NotACallResource("no call sid")
    if body.get("status") is not None and not (isinstance(body["status"], str) and _STATUS.match(body["status"])):
        raise NotACallResource("no call status")
    resource = {}
    for key in CALL_RESOURCE_KEYS & body.keys():
        value = body[key]
        if key == "subresource_uris" and isinstance(value, dict):
            value = {bounded(k, 100): bounded(v, MAX_VALUE) for k, v in list(value.items())[:20] if isinstance(v, str)}
        elif isinstance(value, str):
            value = bounded(value, MAX_VALUE)
        elif not (value is None or isinstance(value, (bool, int, float))):
            raise NotACallResource(f"{key} is not a value")
        resource[key] = value
    return resource


def _remote_call(client: Client) -> RemoteCall:
    answer = client.http_client.answer
    try:
        response = call_resource(json.loads(answer.text))
    except (ValueError, NotACallResource):
        raise NotACallResource(f"The provider's answer is not a call resource ({_describe(answer)})") from None
    return RemoteCall(
        sid=response["sid"], status=response.get("status"), direction=response.get("direction"),
        duration=_int_or_none(response.get("duration")), response=response,
    )


def _status(client: Client, error: Exception) -> int | None:
    """The HTTP status of the answer (a problem body's own `status` may be anything)."""
    answer = client.http_client.answer
    if answer is not None:
        return answer.status_code
    status = getattr(error, "status", None)
    return status if isinstance(status, int) else None


def _translate(error: TwilioException, client: Client, created: bool) -> Exception:
    status = _status(client, error)
    code = getattr(error, "code", None)
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    if isinstance(error, TwilioServiceException):
        message = f"{error.title}: {error.detail}" if error.detail else str(error.title)
    else:
        message = error.msg
    message = bounded(message)
    if status == 429 or code == RATE_LIMITED_CODE:
        return ProviderRateLimited(message)
    if status is None or status >= 500:
        # the provider may have created the call before failing
        return OutcomeUnknown(message) if created else ProviderUnreachable(message)
    return ProviderRefused(message, status, code)


class TwilioProvider:
    def __init__(self, timeout: float = 15.0):
        self.timeout = timeout
        self._local = threading.local()  # a client (and its kept-alive connection) per thread and credentials

    def _client(self, credentials: ProviderCredentials) -> Client:
        """This thread's client, with no answer yet (an exception tells by it whether the provider answered)."""
        clients = self._local.__dict__.setdefault("clients", {})
        if credentials not in clients:
            clients[credentials] = _client(credentials, self.timeout)
        clients[credentials].http_client.answer = None
        return clients[credentials]

    def warm(self, credentials: ProviderCredentials) -> None:
        """Build this thread's client and import the modules the twilio client loads on first use."""
        self._client(credentials).calls

    def create_call(self, credentials: ProviderCredentials, to: str, params: dict,
                    on_time: Callable[[], bool] | None = None) -> RemoteCall:
        client = self._client(credentials)
        client.http_client.on_time = on_time
        try:
            client.calls.create(to=to, **_kwargs(params))
            return _remote_call(client)
        except SlotMissed:
            raise
        except (TwilioRestException, TwilioServiceException) as error:
            raise _translate(error, client, created=True) from None
        except (requests.ConnectionError, requests.Timeout) as error:
            if _never_sent(error):
                raise ProviderUnreachable(bounded(error)) from None
            raise OutcomeUnknown(bounded(error)) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as error:  # nothing was sent, nor can be
            raise ProviderRefused(f"Unable to create record: the provider URL is invalid ({bounded(error)})") from None
        except TypeError as error:  # a parameter the client does not know
            if client.http_client.answer is None:
                raise ProviderRefused(f"Unable to create record: {bounded(error)}") from None
            raise self._unknown(client, error) from None
        except Exception as error:  # a 2xx that is no call resource (not JSON, arbitrary JSON), or the unforeseen
            raise self._unknown(client, error) from None
        finally:
            client.http_client.on_time = None

    @staticmethod
    def _unknown(client: Client, error: Exception) -> OutcomeUnknown:
        """The provider answered (or may have) but not with a call: whether it made one is unknown."""
        if isinstance(error, NotACallResource):
            return OutcomeUnknown(str(error))
        if client.http_client.answer is not None:
            return OutcomeUnknown(f"The provider's answer is not a call resource ({_describe(client.http_client.answer)})")
        return OutcomeUnknown(bounded(f"Unexpected failure of the provider request: {error!r}"))

    def fetch_call(self, credentials: ProviderCredentials, sid: str) -> RemoteCall:
        client = self._client(credentials)
        try:
            client.calls(sid).fetch()
            return _remote_call(client)
        except (TwilioRestException, TwilioServiceException) as error:
            raise _translate(error, client, created=False) from None
        except requests.RequestException as error:
            raise ProviderUnreachable(bounded(error)) from None
        except NotACallResource as error:
            raise ProviderRefused(str(error), _status(client, error)) from None
        except Exception as error:  # a 2xx that is not JSON, or the unforeseen
            answer = client.http_client.answer
            message = (f"The provider's answer is not a call resource ({_describe(answer)})" if answer is not None
                       else bounded(f"Unexpected failure of the provider request: {error!r}"))
            raise ProviderRefused(message, _status(client, error)) from None

    def find_calls(self, credentials: ProviderCredentials, to: str) -> list[RemoteCall]:
        """Newest first; a page of 50 reaches back far enough for the minutes an unknown outcome waits.
        Nothing is filtered out here: a call this cannot read must count against adopting another one."""
        client = self._client(credentials)
        try:
            return [_listed(call) for call in client.calls.list(to=to, page_size=50, limit=50)]
        except (TwilioRestException, TwilioServiceException) as error:
            raise _translate(error, client, created=False) from None
        except TwilioException as error:  # a page that did not load: ('Unable to fetch page', response)
            status = getattr(error.args[1] if len(error.args) > 1 else None, "status_code", None)
            if status == 429:
                raise ProviderRateLimited(bounded(error)) from None
            if status is None or status >= 500:
                raise ProviderUnreachable(bounded(error)) from None
            raise ProviderRefused(f"{bounded(error.args[0])}: HTTP {status}", status) from None
        except Exception as error:  # no answer, or one that is not a list of calls
            answer = client.http_client.answer
            detail = f"the answer is not a list of calls ({_describe(answer)})" if answer is not None else repr(error)
            raise ProviderUnreachable(bounded(f"listing calls: {detail}")) from None


def _listed(call) -> RemoteCall:
    """A listed call; values it cannot read are None (and a call without a readable date is never adopted)."""
    sid, status = _text_or_none(call.sid), _text_or_none(call.status)
    readable = sid is not None and _SID.match(sid) and isinstance(call.date_created, datetime)
    created_at = call.date_created if readable else None
    return RemoteCall(sid=sid or "", status=status, direction=_text_or_none(call.direction),
                      duration=_int_or_none(call.duration),
                      response={"sid": sid, "status": status, "to": _text_or_none(call.to),
                                "date_created": created_at.isoformat() if created_at else None},
                      created_at=created_at)


def _text_or_none(value) -> str | None:
    return bounded(value, MAX_VALUE) if isinstance(value, str) else None


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _never_sent(error: Exception) -> bool:
    """A refused connection or a connect timeout: the request cannot have reached the provider."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    text = repr(error)
    return isinstance(error, requests.ConnectionError) and (
        "NewConnectionError" in text or "Connection refused" in text or "NameResolutionError" in text
    )


def signature_is_valid(auth_token: str, url: str, params: Any, signature: str) -> bool:
    """Whether `signature` is the provider's over `url` and the form `params` (a MultiDict, or a dict of
    values or lists of values): over the URL as we see it, else with its port added or removed (providers
    sign either, and twilio's RequestValidator.validate accepts both). A genuine request costs one HMAC,
    where validate always computes two."""
    if not signature:
        return False
    lists = params.lists() if hasattr(params, "lists") else params.items()
    signed = "".join(name + value for name, values in sorted(lists)
                     for value in sorted(set(values if isinstance(values, list) else [values])))
    key, given = auth_token.encode(), signature.encode("utf-8", "surrogatepass")
    if hmac.compare_digest(_signature(key, url + signed), given):
        return True
    parsed = urlparse(url)
    return any(hmac.compare_digest(_signature(key, other + signed), given)
               for other in {add_port(parsed), remove_port(parsed)} - {url})


def _signature(key: bytes, text: str) -> bytes:
    return base64.b64encode(hmac.digest(key, text.encode(), "sha1"))
