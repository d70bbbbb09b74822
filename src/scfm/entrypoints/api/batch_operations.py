"""/api/batch_operations (also under a callout), their events, previews and results."""
from __future__ import annotations

from flask.views import MethodView
from marshmallow import fields, validate

from scfm.domain import batch_operation as bo
from scfm.entrypoints.api.callout_participations import CalloutParticipationSchema
from scfm.entrypoints.api.contacts import ContactSchema
from scfm.entrypoints.api.http import (
    Blueprint, JsonObject, MetadataArgs, event_args, PaginationArgs, ResourceSchema, created, deps, paginated, paging, uow,
)
from scfm.entrypoints.api.phone_calls import PhoneCallSchema
from scfm.services import batch_operations as services

blp = Blueprint("batch_operations", __name__, url_prefix="/api", description="Batch operations")


class BatchOperationSchema(ResourceSchema):
    callout_id = fields.Integer(allow_none=True)
    parameters = fields.Dict()
    status = fields.String()
    type = fields.String()
    error_message = fields.String(allow_none=True)
    account_id = fields.Integer()


class BatchOperationArgs(MetadataArgs):
    type = fields.String(required=True, validate=validate.OneOf(bo.TYPES))
    parameters = JsonObject()
    callout_id = fields.Integer()


EventArgs = event_args("BatchOperation", "queue", "requeue")


class BatchOperationUpdateArgs(MetadataArgs):
    type = fields.String()
    parameters = JsonObject(metadata={"description": "Replaced as a whole"})


@blp.route("/batch_operations")
class BatchOperations(MethodView):
    @blp.arguments(PaginationArgs, location="query")
    @blp.response(200, BatchOperationSchema(many=True))
    def get(self, args):
        """List batch operations; filter by status, type, callout_id, parameters and metadata."""
        return paginated(services.list_batch_operations(uow(), args.get("q"), paging(args)))

    @blp.arguments(BatchOperationArgs)
    @blp.response(201, BatchOperationSchema)
    def post(self, args):
        """Create a batch operation in preview."""
        operation = services.create_batch_operation(uow(), uow().account_id, args)
        return created(operation, f"/api/batch_operations/{operation.id}")


@blp.route("/callouts/<int:callout_id>/batch_operations")
class CalloutBatchOperations(MethodView):
    @blp.arguments(PaginationArgs, location="query")
    @blp.response(200, BatchOperationSchema(many=True))
    def get(self, args, callout_id):
        """List a callout's batch operations."""
        return paginated(services.list_batch_operations(uow(), args.get("q"), paging(args), callout_id=callout_id))

    @blp.arguments(BatchOperationArgs)
    @blp.response(201, BatchOperationSchema)
    def post(self, args, callout_id):
        """Create a batch operation for a callout (a CalloutPopulation needs one)."""
        args.pop("callout_id", None)
        operation = services.create_batch_operation(uow(), uow().account_id, args, callout_id=callout_id)
        return created(operation, f"/api/batch_operations/{operation.id}")


@blp.route("/batch_operations/<int:operation_id>")
class BatchOperationById(MethodView):
    @blp.response(200, BatchOperationSchema)
    def get(self, operation_id):
        """Fetch a batch operation."""
        return services.get_batch_operation(uow(), operation_id)

    @blp.arguments(BatchOperationUpdateArgs)
    @blp.response(204)
    def patch(self, args, operation_id):
        """Update a batch operation: parameters are replaced whole; metadata merges."""
        services.update_batch_operation(uow(), operation_id, args)

    @blp.response(204)
    def delete(self, operation_id):
        """Delete a batch operation that is not queued or running and touched no records."""
        services.delete_batch_operation(uow(), operation_id)


@blp.route("/batch_operations/<int:operation_id>/batch_operation_events", methods=["POST"])
@blp.arguments(EventArgs)
@blp.response(201, BatchOperationSchema)
def batch_operation_events(args, operation_id):
    """Fire queue (from preview) or requeue (when finished): a worker runs it."""
    operation = services.fire_batch_operation_event(uow(), deps().jobs, operation_id, args["event"])
    return created(operation, f"/api/batch_operations/{operation.id}")


def _route(path: str, endpoint: str, schema, fetch, kind: str, doc: str):
    @blp.route(path, methods=["GET"], endpoint=endpoint)
    @blp.arguments(PaginationArgs, location="query")
    @blp.response(200, schema(many=True))
    def view(args, operation_id):
        return paginated(fetch(uow(), operation_id, kind, paging(args)))

    view.__doc__ = doc


_route("/batch_operations/<int:operation_id>/preview/contacts", "preview_contacts", ContactSchema, services.preview,
       "contacts", "Preview the contacts a population adds, or a PhoneCallCreate calls.")
_route("/batch_operations/<int:operation_id>/preview/callout_participations", "preview_callout_participations",
       CalloutParticipationSchema, services.preview, "callout_participations",
       "Preview the participations a PhoneCallCreate creates calls for.")
_route("/batch_operations/<int:operation_id>/preview/phone_calls", "preview_phone_calls", PhoneCallSchema,
       services.preview, "phone_calls", "Preview the phone calls a PhoneCallQueue or PhoneCallQueueRemoteFetch acts on.")
_route("/batch_operations/<int:operation_id>/callout_participations", "result_callout_participations",
       CalloutParticipationSchema, services.results, "callout_participations",
       "The participations a population created.")
_route("/batch_operations/<int:operation_id>/contacts", "result_contacts", ContactSchema, services.results, "contacts",
       "The contacts a population added.")
_route("/batch_operations/<int:operation_id>/phone_calls", "result_phone_calls", PhoneCallSchema, services.results,
       "phone_calls", "The phone calls an operation created, queued or fetched.")
