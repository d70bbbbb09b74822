"""/api/phone_calls, also under a participation, a contact or a callout, and their events."""
from __future__ import annotations

from flask.views import MethodView
from marshmallow import fields

from scfm.entrypoints.api.http import (
    NAME_LENGTH, Blueprint, JsonObject, MetadataArgs, event_args, PaginationArgs, ResourceSchema, Timestamp,
    bounded_string, call_flows, created, deps, msisdn_string, paginated, paging, uow,
)
from scfm.services import phone_calls as services

blp = Blueprint("phone_calls", __name__, url_prefix="/api", description="Phone calls")


class PhoneCallSchema(ResourceSchema):
    callout_participation_id = fields.Integer(allow_none=True)
    contact_id = fields.Integer()
    create_batch_operation_id = fields.Integer(allow_none=True)
    queue_batch_operation_id = fields.Integer(allow_none=True)
    queue_remote_fetch_batch_operation_id = fields.Integer(allow_none=True)
    status = fields.String()
    msisdn = fields.String()
    remote_call_id = fields.String(allow_none=True)
    remote_status = fields.String(allow_none=True)
    remote_direction = fields.String(allow_none=True)
    remote_error_message = fields.String(allow_none=True)
    remote_response = fields.Dict()
    remote_request_params = fields.Dict()
    remote_queue_response = fields.Dict()
    call_flow_logic = fields.Function(lambda call: call.effective_call_flow_logic, allow_none=True)
    remotely_queued_at = Timestamp(allow_none=True)
    duration = fields.Integer(allow_none=True)
    account_id = fields.Integer()


class PhoneCallUpdateArgs(MetadataArgs):
    msisdn = msisdn_string()
    call_flow_logic = bounded_string(NAME_LENGTH, allow_none=True)
    remote_request_params = JsonObject(metadata={"description": "Twilio create-call parameters, snake_case"})


class PhoneCallArgs(PhoneCallUpdateArgs):
    remote_request_params = JsonObject(required=True,
                                       metadata={"description": "Twilio create-call parameters, snake_case"})


EventArgs = event_args("PhoneCall", "queue", "queue_remote_fetch")


def _list(args, **parents):
    return paginated(services.list_phone_calls(uow(), args.get("q"), paging(args), **parents))


@blp.route("/phone_calls", methods=["GET"])
@blp.arguments(PaginationArgs, location="query")
@blp.response(200, PhoneCallSchema(many=True))
def index(args):
    """List phone calls; filter by status, msisdn, remote fields, JSON fields and timestamps."""
    return _list(args)


@blp.route("/callout_participations/<int:participation_id>/phone_calls")
class ParticipationPhoneCalls(MethodView):
    @blp.arguments(PaginationArgs, location="query")
    @blp.response(200, PhoneCallSchema(many=True))
    def get(self, args, participation_id):
        """List the phone calls of a participation."""
        return _list(args, participation_id=participation_id)

    @blp.arguments(PhoneCallArgs)
    @blp.response(201, PhoneCallSchema)
    def post(self, args, participation_id):
        """Create a phone call for a participation (remote_request_params required)."""
        call = services.create_phone_call(uow(), call_flows(), participation_id, args)
        return created(call, f"/api/phone_calls/{call.id}")


@blp.route("/contacts/<int:contact_id>/phone_calls", methods=["GET"])
@blp.arguments(PaginationArgs, location="query")
@blp.response(200, PhoneCallSchema(many=True))
def contact_phone_calls(args, contact_id):
    """List the phone calls of a contact."""
    return _list(args, contact_id=contact_id)


@blp.route("/callouts/<int:callout_id>/phone_calls", methods=["GET"])
@blp.arguments(PaginationArgs, location="query")
@blp.response(200, PhoneCallSchema(many=True))
def callout_phone_calls(args, callout_id):
    """List the phone calls of a callout."""
    return _list(args, callout_id=callout_id)


@blp.route("/phone_calls/<int:phone_call_id>")
class PhoneCallById(MethodView):
    @blp.response(200, PhoneCallSchema)
    def get(self, phone_call_id):
        """Fetch a phone call."""
        return services.get_phone_call(uow(), phone_call_id)

    @blp.arguments(PhoneCallUpdateArgs)
    @blp.response(204)
    def patch(self, args, phone_call_id):
        """Update a phone call (msisdn, call flow logic and request parameters only while created)."""
        services.update_phone_call(uow(), call_flows(), phone_call_id, args)

    @blp.response(204)
    def delete(self, phone_call_id):
        """Delete a phone call that is still created."""
        services.delete_phone_call(uow(), phone_call_id)


@blp.route("/phone_calls/<int:phone_call_id>/phone_call_events", methods=["POST"])
@blp.arguments(EventArgs)
@blp.response(201, PhoneCallSchema)
def phone_call_events(args, phone_call_id):
    """Fire queue (dial it) or queue_remote_fetch (fetch its status from the provider)."""
    call = services.fire_phone_call_event(uow(), deps().jobs, phone_call_id, args["event"])
    return created(call, f"/api/phone_calls/{call.id}")

