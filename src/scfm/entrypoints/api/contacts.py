"""/api/contacts, and the contacts of a callout."""
from __future__ import annotations

from flask.views import MethodView
from marshmallow import fields

from scfm.entrypoints.api.http import (
    Blueprint, MetadataArgs, PaginationArgs, ResourceSchema, created, msisdn_string, paginated, paging, uow,
)
from scfm.services import callouts as callout_services
from scfm.services import contacts as services

blp = Blueprint("contacts", __name__, url_prefix="/api", description="Contacts")


class ContactSchema(ResourceSchema):
    msisdn = fields.String()
    account_id = fields.Integer()


class ContactUpdateArgs(MetadataArgs):
    msisdn = msisdn_string()


class ContactArgs(ContactUpdateArgs):
    msisdn = msisdn_string(required=True)


@blp.route("/contacts")
class Contacts(MethodView):
    @blp.arguments(PaginationArgs, location="query")
    @blp.response(200, ContactSchema(many=True))
    def get(self, args):
        """List contacts; filter with q[msisdn], q[metadata][...], q[created_at_before] and the like."""
        return paginated(services.list_contacts(uow(), args.get("q"), paging(args)))

    @blp.arguments(ContactArgs)
    @blp.response(201, ContactSchema)
    def post(self, args):
        """Create a contact."""
        contact = services.create_contact(uow(), uow().account_id, args)
        return created(contact, f"/api/contacts/{contact.id}")


@blp.route("/contacts/<int:contact_id>")
class ContactById(MethodView):
    @blp.response(200, ContactSchema)
    def get(self, contact_id):
        """Fetch a contact."""
        return services.get_contact(uow(), contact_id)

    @blp.arguments(ContactUpdateArgs)
    @blp.response(204)
    def patch(self, args, contact_id):
        """Update a contact; metadata_merge_mode is merge (default), deep_merge or replace."""
        services.update_contact(uow(), contact_id, args)

    @blp.response(204)
    def delete(self, contact_id):
        """Delete a contact that has no callout participations or phone calls."""
        services.delete_contact(uow(), contact_id)


@blp.route("/callouts/<int:callout_id>/contacts", methods=["GET"])
@blp.arguments(PaginationArgs, location="query")
@blp.response(200, ContactSchema(many=True))
def callout_contacts(args, callout_id):
    """List the contacts who participate in a callout."""
    return paginated(callout_services.list_callout_contacts(uow(), callout_id, args.get("q"), paging(args)))
