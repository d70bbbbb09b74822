"""Twilio and Somleng through the `twilio` client: Somleng is the same API at another base URL."""
from __future__ import annotations

import json
import threading

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from scfm.domain.ports import (
    OutcomeUnknown, ProviderCredentials, ProviderRateLimited, ProviderRefused, ProviderUnreachable, RemoteCall,
)

RATE_LIMITED_CODE = 20429


class RecordingHttpClient(TwilioHttpClient):
    """Keeps the provider's last answer: its JSON is stored as it came (remote_queue_response)."""

    answer = None

    def request(self, *args, **kwargs):
        self.answer = super().request(*args, **kwargs)
        return self.answer


def _client(credentials: ProviderCredentials, timeout: float) -> Client:
    http_client = RecordingHttpClient(timeout=timeout)
    http_client.session.trust_env = False
    client = Client(credentials.account_sid, credentials.auth_token, http_client=http_client)
    client.edge = client.region = None
    if credentials.base_url:
        client.api.base_url = credentials.base_url.rstrip("/")
    return client


def _kwargs(params: dict) -> dict:
    kwargs = {("from_" if key == "from" else key): value for key, value in params.items()}
    return kwargs


def _remote_call(client: Client) -> RemoteCall:
    response = json.loads(client.http_client.answer.text or "{}")
    duration = response.get("duration")
    return RemoteCall(
        sid=response.get("sid"), status=response.get("status"), direction=response.get("direction"),
        duration=int(duration) if duration not in (None, "") else None, response=response,
    )


def _translate(error: TwilioRestException, created: bool) -> Exception:
    if error.status == 429 or error.code == RATE_LIMITED_CODE:
        return ProviderRateLimited(error.msg)
    if error.status is not None and error.status >= 500:
        # the provider may have created the call before failing
        return OutcomeUnknown(error.msg) if created else ProviderUnreachable(error.msg)
    return ProviderRefused(error.msg, error.status, error.code)


class TwilioProvider:
    def __init__(self, timeout: float = 15.0):
        self.timeout = timeout
        self._local = threading.local()  # a client (and its kept-alive connection) per thread and credentials

    def _client(self, credentials: ProviderCredentials) -> Client:
        clients = self._local.__dict__.setdefault("clients", {})
        if credentials not in clients:
            clients[credentials] = _client(credentials, self.timeout)
        return clients[credentials]

    def warm(self, credentials: ProviderCredentials) -> None:
        """Build this thread's client and import the modules the twilio client loads on first use."""
        self._client(credentials).calls

    def create_call(self, credentials: ProviderCredentials, to: str, params: dict) -> RemoteCall:
        client = self._client(credentials)
        try:
            client.calls.create(to=to, **_kwargs(params))
        except TwilioRestException as error:
            raise _translate(error, created=True) from None
        except (requests.ConnectionError, requests.Timeout) as error:
            if _never_sent(error):
                raise ProviderUnreachable(str(error)) from None
            raise OutcomeUnknown(str(error)) from None
        except TypeError as error:  # a parameter the client does not know
            raise ProviderRefused(f"Unable to create record: {error}") from None
        return _remote_call(client)

    def fetch_call(self, credentials: ProviderCredentials, sid: str) -> RemoteCall:
        client = self._client(credentials)
        try:
            client.calls(sid).fetch()
        except TwilioRestException as error:
            raise _translate(error, created=False) from None
        except (requests.ConnectionError, requests.Timeout) as error:
            raise ProviderUnreachable(str(error)) from None
        return _remote_call(client)

    def find_calls(self, credentials: ProviderCredentials, to: str) -> list[RemoteCall]:
        """Newest first; a page of 50 reaches back far enough for the minutes an unknown outcome waits.
        Nothing is filtered out here: a call this cannot read must count against adopting another one."""
        client = self._client(credentials)
        try:
            instances = client.calls.list(to=to, page_size=50, limit=50)
        except TwilioRestException as error:
            raise _translate(error, created=False) from None
        except TwilioException as error:  # a page that did not load: ('Unable to fetch page', response)
            status = getattr(error.args[1] if len(error.args) > 1 else None, "status_code", None)
            if status == 429:
                raise ProviderRateLimited(str(error)) from None
            if status is None or status >= 500:
                raise ProviderUnreachable(str(error)) from None
            raise ProviderRefused(f"{error.args[0]}: HTTP {status}", status) from None
        except (requests.RequestException, ValueError) as error:  # no answer, or one that is not a list
            raise ProviderUnreachable(f"listing calls: {error!r}") from None
        return [
            RemoteCall(sid=call.sid, status=call.status, direction=call.direction,
                       duration=_int_or_none(call.duration),
                       response={"sid": call.sid, "status": call.status, "to": call.to,
                                 "date_created": call.date_created.isoformat() if call.date_created else None},
                       created_at=call.date_created)
            for call in instances
        ]


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


def signature_is_valid(auth_token: str, url: str, params: dict, signature: str) -> bool:
    return bool(signature) and RequestValidator(auth_token).validate(url, params, signature)
