"""/api/callout_participations, also under a callout or a contact."""
from __future__ import annotations

from flask.views import MethodView
from marshmallow import fields

from scfm.entrypoints.api.http import (
    NAME_LENGTH, Blueprint, MetadataArgs, PaginationArgs, ResourceSchema, bounded_string, call_flows, created,
    msisdn_string, paginated, paging, uow,
)
from scfm.services import callouts as services

blp = Blueprint("callout_participations", __name__, url_prefix="/api", description="Callout participations")


class CalloutParticipationSchema(ResourceSchema):
    callout_id = fields.Integer()
    contact_id = fields.Integer()
    callout_population_id = fields.Integer(allow_none=True)
    msisdn = fields.String()
    call_flow_logic = fields.Function(lambda p: p.effective_call_flow_logic, allow_none=True)


class CalloutParticipationUpdateArgs(MetadataArgs):
    msisdn = msisdn_string()
    call_flow_logic = bounded_string(NAME_LENGTH, allow_none=True)


class CalloutParticipationArgs(CalloutParticipationUpdateArgs):
    contact_id = fields.Integer(required=True)


def _list(args, **parents):
    return paginated(services.list_participations(uow(), args.get("q"), paging(args), **parents))


@blp.route("/callout_participations", methods=["GET"])
@blp.arguments(PaginationArgs, location="query")
@blp.response(200, CalloutParticipationSchema(many=True))
def index(args):
    """List callout participations; q[has_phone_calls], q[last_phone_call_attempt] and more."""
    return _list(args)


@blp.route("/callouts/<int:callout_id>/callout_participations")
class CalloutParticipations(MethodView):
    @blp.arguments(PaginationArgs, location="query")
    @blp.response(200, CalloutParticipationSchema(many=True))
    def get(self, args, callout_id):
        """List the participations of a callout."""
        return _list(args, callout_id=callout_id)

    @blp.arguments(CalloutParticipationArgs)
    @blp.response(201, CalloutParticipationSchema)
    def post(self, args, callout_id):
        """Add a contact to a callout (msisdn defaults to the contact's)."""
        participation = services.create_participation(uow(), call_flows(), callout_id, args)
        return created(participation, f"/api/callout_participations/{participation.id}")


@blp.route("/contacts/<int:contact_id>/callout_participations", methods=["GET"])
@blp.arguments(PaginationArgs, location="query")
@blp.response(200, CalloutParticipationSchema(many=True))
def contact_participations(args, contact_id):
    """List the participations of a contact."""
    return _list(args, contact_id=contact_id)


@blp.route("/callout_participations/<int:participation_id>")
class CalloutParticipationById(MethodView):
    @blp.response(200, CalloutParticipationSchema)
    def get(self, participation_id):
        """Fetch a callout participation."""
        return services.get_participation(uow(), participation_id)

    @blp.arguments(CalloutParticipationUpdateArgs)
    @blp.response(204)
    def patch(self, args, participation_id):
        """Update a participation's msisdn, call flow logic or metadata."""
        services.update_participation(uow(), call_flows(), participation_id, args)

    @blp.response(204)
    def delete(self, participation_id):
        """Delete a participation that has no phone calls."""
        services.delete_participation(uow(), participation_id)
