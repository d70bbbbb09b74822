"""The provider webhook (POST /api/remote_phone_call_events) and the events it records."""
from __future__ import annotations

from flask import Response, request
from flask.views import MethodView
from marshmallow import fields

from scfm.adapters.provider import signature_is_valid
from scfm.adapters.twiml import render
from scfm.entrypoints.api.http import (
    Blueprint, MetadataArgs, PaginationArgs, ResourceSchema, call_flows, deps, paginated, paging, uow,
)
from scfm.services import remote_events as services

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


def public_url() -> str:
    """The URL the provider signed: the configured public base URL, or the forwarded one behind a proxy."""
    settings = deps().settings
    path = request.full_path if request.query_string else request.path
    if settings.public_url:
        return settings.public_url + path
    if settings.trust_proxy and request.headers.get("X-Forwarded-Host"):
        scheme = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
        host = request.headers["X-Forwarded-Host"].split(",")[0].strip()
        return f"{scheme}://{host}{path}"
    return request.url


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
        result = services.handle_webhook(
            d.uow, call_flows(), d.settings.provider, signature_is_valid, public_url(), request.form,
            request.headers.get("X-Twilio-Signature", ""), request.args.get("phone_call_id"),
        )
        if result.event is None:  # a replay: nothing recorded, the call flow answers as the call now stands
            return Response(render(result.call_flow_response), status=200, mimetype="application/xml")
        return Response(render(result.call_flow_response), status=201, mimetype="application/xml",
                        headers={"Location": f"/api/remote_phone_call_events/{result.event.id}"})


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
