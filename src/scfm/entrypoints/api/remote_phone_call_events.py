"""The provider webhook (POST /api/remote_phone_call_events) and the events it records."""
from __future__ import annotations

import sys
from functools import partial
from typing import Callable, Iterable
from urllib.parse import unquote

from flask import Flask, Request, Response, request
from flask.ctx import RequestContext
from flask.views import MethodView
from marshmallow import fields
from werkzeug.exceptions import ClientDisconnected
from werkzeug.http import HTTP_STATUS_CODES

from scfm.adapters.postgres.reports_unit import SqlReportsUnitOfWork
from scfm.adapters.provider import signature_is_valid
from scfm.adapters.twiml import render
from scfm.bootstrap import Deps
from scfm.config import Settings
from scfm.entrypoints.api.http import (
    Blueprint, MetadataArgs, PaginationArgs, ResourceSchema, check_text, deps, paginated, paging, uow,
)
from scfm.services import remote_events as services

WEBHOOK_PATH = "/api/remote_phone_call_events"
FORM_TYPE = "application/x-www-form-urlencoded"
TWIML_TYPE = "application/xml; charset=utf-8"
STATUS_LINES = {status: f"{status} {HTTP_STATUS_CODES[status].upper()}" for status in (200, 201)}  # as werkzeug's

blp = Blueprint("remote_phone_call_events", __name__, url_prefix="/api", description="Remote phone call events")


class RemotePhoneCallEventSchema(ResourceSchema):
    phone_call_id = fields.Integer()
    details = fields.Dict()
    remote_call_id = fields.String(allow_none=True)
    remote_direction = fields.String(allow_none=True)
    call_flow_logic = fields.String(allow_none=True)


WEBHOOK_DOC = {
    "parameters": [{"in": "header", "name": "X-Twilio-Signature", "required": True, "schema": {"type": "string"},
                    "description": "HMAC-SHA1 of the public URL and the sorted form, keyed by the auth token"}],
    "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": ["AccountSid", "CallSid"], "additionalProperties": {"type": "string"},
        "properties": {name: {"type": "string"} for name in (
            "AccountSid", "CallSid", "CallStatus", "Direction", "From", "To", "ApiVersion", "CallDuration", "Digits")},
    }}}},
    "responses": {
        "200": {"description": "A replay of a request already recorded: nothing recorded, TwiML as the call now stands",
                "content": {"application/xml": {"schema": {"type": "string"}}}},
        "201": {"description": "TwiML of the call's call flow logic",
                "content": {"application/xml": {"schema": {"type": "string"}}}},
        "400": {"description": "Malformed request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "403": {"description": "Bad or missing signature, or unknown AccountSid",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "404": {"description": "A CallSid that is neither ours nor inbound",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "413": {"description": "Body too large", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "422": {"description": "Missing CallSid, or a parameter the webhook reads given twice", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
    },
}


def public_url(req: Request, settings: Settings) -> str:
    """The URL the provider signed: the configured public base URL, or the forwarded one behind a proxy."""
    path = req.full_path if req.query_string else req.path
    if settings.public_url:
        return settings.public_url + path
    if settings.trust_proxy and req.headers.get("X-Forwarded-Host"):
        scheme = req.headers.get("X-Forwarded-Proto", req.scheme).split(",")[0].strip()
        host = req.headers["X-Forwarded-Host"].split(",")[0].strip()
        return f"{scheme}://{host}{path}"
    return req.url


def answer(url: str, form: dict[str, list[str]], signature: str, phone_call_id: str | None,
           d: Deps) -> tuple[int, str, dict[str, str]]:
    """The webhook's answer to a request signed `signature` over `url` and its `form` (names to lists of
    values), as (status, TwiML, headers): 201 with the event recorded, 200 for a replay."""
    result = services.handle_webhook(
        partial(SqlReportsUnitOfWork, d.engine), d.call_flows, d.settings.provider, signature_is_valid,
        url, form, signature, phone_call_id,
    )
    twiml = render(result.call_flow_response)
    if result.event is None:  # a replay: nothing recorded, the call flow answers as the call now stands
        return 200, twiml, {}
    return 201, twiml, {"Location": f"/api/remote_phone_call_events/{result.event.id}"}


class WebhookRoute:
    """POST /api/remote_phone_call_events without Flask's dispatch: every status callback of every call comes
    here, and Flask's request context, hooks, routing, view and response machinery, and werkzeug's form
    parser around parse_qsl, cost more CPU than the webhook's own work. A form with a Content-Length within
    the limits (as providers send it) is parsed as werkzeug parses it, checked as the app's hooks check every
    request (text PostgreSQL can store), and answered by `answer`, as the Flask view answers it; an error
    goes to the app's own error handlers. Anything else (a chunked body, another content type, a body over
    a limit) goes to Flask. The app's before_request and after_request hooks do not run here: what they do
    for every request (check_text, today) this route does too."""

    def __init__(self, app: Flask, deps: Deps):
        self.app, self.deps, self.flask = app, deps, app.wsgi_app
        self.limit = app.config["MAX_CONTENT_LENGTH"] or sys.maxsize

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        length = environ.get("CONTENT_LENGTH") or ""
        if (environ.get("PATH_INFO") != WEBHOOK_PATH or environ["REQUEST_METHOD"] != "POST"
                or environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower() != FORM_TYPE
                or not (length.isascii() and length.isdigit() and int(length) <= self.limit)
                or "HTTP_TRANSFER_ENCODING" in environ):
            return self.flask(environ, start_response)
        try:
            query = environ.get("QUERY_STRING", "").encode("latin1").decode()  # as werkzeug's query_string
            args, form = _lists(query), _lists(_body(environ["wsgi.input"], int(length)))
            check_text(args, "the query")
            check_text(form, "the body")
            url = self._public_url(environ, query)
            phone_call_id = args["phone_call_id"][0] if "phone_call_id" in args else None
            status, twiml, headers = answer(url, form, environ.get("HTTP_X_TWILIO_SIGNATURE", ""), phone_call_id,
                                            self.deps)
        except Exception as error:  # noqa: BLE001 - answered as Flask answers it
            return self._failed(environ, error, start_response)
        body = twiml.encode()
        start_response(STATUS_LINES[status], [*headers.items(), ("Content-Type", TWIML_TYPE),
                                              ("Content-Length", str(len(body)))])
        return [body]

    def _public_url(self, environ: dict, query: str) -> str:
        """public_url's answer, without a werkzeug Request when PUBLIC_URL is set (the path is WEBHOOK_PATH)."""
        if self.deps.settings.public_url:
            return self.deps.settings.public_url + (f"{WEBHOOK_PATH}?{query}" if query else WEBHOOK_PATH)
        return public_url(self.app.request_class(environ), self.deps.settings)

    def _failed(self, environ: dict, error: Exception, start_response: Callable) -> Iterable[bytes]:
        """As Flask's wsgi_app and full_dispatch_request answer an exception: the app's handler for it, else
        a logged 500."""
        with RequestContext(self.app, environ):
            try:
                response = self.app.finalize_request(self.app.handle_user_exception(error))
            except Exception as unhandled:  # noqa: BLE001
                response = self.app.handle_exception(unhandled)
            return response(environ, start_response)


def _body(stream, length: int) -> str:
    """A urlencoded body of `length` bytes as text; a body that is not UTF-8 is no form (werkzeug's parser is
    silent: an empty form); a body shorter than its Content-Length is a client gone (400)."""
    data = stream.read(length)
    if len(data) < length:
        raise ClientDisconnected()
    try:
        return data.decode()
    except UnicodeDecodeError:
        return ""


def _lists(text: str) -> dict[str, list[str]]:
    """A query or urlencoded form as werkzeug parses one (parse_qsl, blank values kept, undecodable escapes
    kept as they are), as names to lists of values. parse_qsl's own loop, unquoting only what has an escape:
    a callback's form is a dozen fields, most with none, and parse_qsl's calls per field cost more than the
    rest of the route."""
    lists: dict[str, list[str]] = {}
    for field in text.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        name, value = _unquoted(name), _unquoted(value)
        if name in lists:
            lists[name].append(value)
        else:
            lists[name] = [value]
    return lists


def _unquoted(text: str) -> str:
    """unquote_plus as parse_qsl calls it for werkzeug."""
    if "+" in text:
        text = text.replace("+", " ")
    return unquote(text, errors="werkzeug.url_quote") if "%" in text else text


def _list(args, **parents):
    return paginated(services.list_events(uow(), args.get("q"), paging(args), **parents))


@blp.route("/remote_phone_call_events")
class RemotePhoneCallEvents(MethodView):
    @blp.arguments(PaginationArgs, location="query")
    @blp.response(200, RemotePhoneCallEventSchema(many=True))
    def get(self, args):
        """List remote phone call events; filter by details, phone call, call flow logic and more."""
        return _list(args)

    @blp.doc(security=[], summary="The provider's webhook (signed with X-Twilio-Signature)", **WEBHOOK_DOC)
    def post(self):
        """Record a provider status or voice request and answer with TwiML."""
        d = deps()
        status, twiml, headers = answer(public_url(request, d.settings), request.form.to_dict(flat=False),
                                        request.headers.get("X-Twilio-Signature", ""),
                                        request.args.get("phone_call_id"), d)
        return Response(twiml, status=status, mimetype="application/xml", headers=headers)


@blp.route("/remote_phone_call_events/<int:event_id>")
class RemotePhoneCallEventById(MethodView):
    @blp.response(200, RemotePhoneCallEventSchema)
    def get(self, event_id):
        """Fetch a remote phone call event."""
        return services.get_event(uow(), event_id)

    @blp.arguments(MetadataArgs)
    @blp.response(204)
    def patch(self, args, event_id):
        """Update an event's metadata."""
        services.update_event(uow(), event_id, args)


def _nested(path: str, parent: str, doc: str):
    @blp.route(path, methods=["GET"], endpoint=f"events_of_{parent}")
    @blp.arguments(PaginationArgs, location="query")
    @blp.response(200, RemotePhoneCallEventSchema(many=True))
    def view(args, **kwargs):
        return _list(args, **{parent: kwargs[parent]})

    view.__doc__ = doc


_nested("/phone_calls/<int:phone_call_id>/remote_phone_call_events", "phone_call_id", "List a phone call's events.")
_nested("/contacts/<int:contact_id>/remote_phone_call_events", "contact_id", "List a contact's events.")
_nested("/callouts/<int:callout_id>/remote_phone_call_events", "callout_id", "List a callout's events.")
_nested("/callout_participations/<int:participation_id>/remote_phone_call_events", "participation_id",
        "List a participation's events.")
