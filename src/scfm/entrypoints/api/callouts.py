"""/api/callouts, their events, and the callouts of a contact."""
from __future__ import annotations

from flask.views import MethodView
from marshmallow import fields

from scfm.entrypoints.api.http import (
    NAME_LENGTH, bounded_string, event_args,
    Blueprint, JsonObject, MetadataArgs, PaginationArgs, ResourceSchema, call_flows, created, deps, paginated, paging,
    uow,
)
from scfm.entrypoints.api.statistics import CalloutFinished
from scfm.services import callouts as services

blp = Blueprint("callouts", __name__, url_prefix="/api", description="Callouts")


CALL_PLAN = (
    "The call plan: remote_request_params, max_attempts (at most SCFM_MAX_ATTEMPTS), retries (per outcome of "
    "busy, not_answered, failed, errored, canceled, expired: a list of delays in seconds, the last repeated), "
    "window (time_zone, days, from, to; null for none) and not_after (an ISO 8601 timestamp). Its keys win over "
    "the account's call_plan; null clears it"
)


class CalloutSchema(ResourceSchema, CalloutFinished):
    status = fields.String()
    call_flow_logic = fields.String(allow_none=True)
    call_plan = fields.Dict(allow_none=True, metadata={"description": CALL_PLAN})
    account_id = fields.Integer()


class CalloutArgs(MetadataArgs):
    call_flow_logic = bounded_string(NAME_LENGTH, allow_none=True)
    call_plan = JsonObject(allow_none=True, metadata={"description": CALL_PLAN})


EventArgs = event_args("Callout", "start", "pause", "resume", "stop")


@blp.route("/callouts")
class Callouts(MethodView):
    @blp.arguments(PaginationArgs, location="query")
    @blp.response(200, CalloutSchema(many=True))
    def get(self, args):
        """List callouts; filter with q[status], q[call_flow_logic], q[metadata][...] and timestamps."""
        return paginated(services.list_callouts(uow(), args.get("q"), paging(args)))

    @blp.arguments(CalloutArgs)
    @blp.response(201, CalloutSchema)
    def post(self, args):
        """Create a callout."""
        callout = services.create_callout(uow(), call_flows(), uow().account_id, args, deps().settings.max_attempts)
        return created(callout, f"/api/callouts/{callout.id}")


@blp.route("/callouts/<int:callout_id>")
class CalloutById(MethodView):
    @blp.response(200, CalloutSchema)
    def get(self, callout_id):
        """Fetch a callout."""
        return services.get_callout(uow(), callout_id)

    @blp.arguments(CalloutArgs)
    @blp.response(204)
    def patch(self, args, callout_id):
        """Update a callout's call flow logic, call plan or metadata."""
        services.update_callout(uow(), call_flows(), callout_id, args, deps().settings.max_attempts)

    @blp.response(204)
    def delete(self, callout_id):
        """Delete a callout that has no participations or batch operations."""
        services.delete_callout(uow(), callout_id)


@blp.route("/callouts/<int:callout_id>/callout_events", methods=["POST"])
@blp.arguments(EventArgs)
@blp.response(201, CalloutSchema)
def callout_events(args, callout_id):
    """Fire start, pause, resume or stop on a callout."""
    callout = services.fire_callout_event(uow(), deps().jobs, callout_id, args["event"])
    return created(callout, f"/api/callouts/{callout.id}")


@blp.route("/contacts/<int:contact_id>/callouts", methods=["GET"])
@blp.arguments(PaginationArgs, location="query")
@blp.response(200, CalloutSchema(many=True))
def contact_callouts(args, contact_id):
    """List the callouts a contact participates in."""
    return paginated(services.list_callouts(uow(), args.get("q"), paging(args), contact_id=contact_id))
