"""/api/accounts (super admins) and /api/account (the caller's own)."""
from __future__ import annotations

from flask import abort, g
from flask.views import MethodView
from marshmallow import fields, validate

from scfm.entrypoints.api.http import (
    NAME_LENGTH, SECRET_LENGTH, SID_LENGTH, URL_LENGTH, Blueprint, JsonObject, MetadataArgs, PaginationArgs,
    ResourceSchema, bounded_string, created, deps, paginated, paging, server_uow, uow,
)
from scfm.services import accounts as services

blp = Blueprint("accounts", __name__, url_prefix="/api/accounts", description="Accounts (super admins only)")
own_blp = Blueprint("account", __name__, url_prefix="/api/account", description="The caller's own account")


ACCOUNT_CALL_PLAN = "The default call plan of the account's callouts (see a callout's call_plan); null clears it"


class AccountSchema(ResourceSchema):
    settings = fields.Dict()
    twilio_account_sid = fields.String(allow_none=True)
    somleng_account_sid = fields.String(allow_none=True)
    platform_provider_name = fields.String(allow_none=True)
    somleng_api_host = fields.String(allow_none=True)
    somleng_api_base_url = fields.String(allow_none=True)
    calls_per_second = fields.Float(allow_none=True)
    max_calls_in_flight = fields.Integer(allow_none=True)
    permissions = fields.List(fields.String())
    call_plan = fields.Dict(allow_none=True, metadata={"description": ACCOUNT_CALL_PLAN})


class AccountArgs(MetadataArgs):
    settings = JsonObject()
    twilio_account_sid = bounded_string(SID_LENGTH, allow_none=True)
    twilio_auth_token = bounded_string(SECRET_LENGTH, allow_none=True, load_only=True)
    somleng_account_sid = bounded_string(SID_LENGTH, allow_none=True)
    somleng_auth_token = bounded_string(SECRET_LENGTH, allow_none=True, load_only=True)
    platform_provider_name = fields.String(allow_none=True, validate=validate.OneOf(["twilio", "somleng"]))
    somleng_api_host = bounded_string(NAME_LENGTH, allow_none=True)
    somleng_api_base_url = bounded_string(URL_LENGTH, allow_none=True)
    calls_per_second = fields.Float(allow_none=True, validate=validate.Range(min=0, max=10000, min_inclusive=False))
    max_calls_in_flight = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=2**31 - 1))
    call_plan = JsonObject(allow_none=True, metadata={"description": ACCOUNT_CALL_PLAN})


class SuperAdminAccountArgs(AccountArgs):
    permissions = fields.List(fields.String(validate=validate.OneOf(["super_admin"])))


def _require_super_admin():
    if not g.account.is_super_admin:
        abort(403)


@blp.before_request
def _only_super_admins():
    _require_super_admin()


@blp.route("")
class Accounts(MethodView):
    @blp.arguments(PaginationArgs, location="query")
    @blp.response(200, AccountSchema(many=True))
    def get(self, args):
        """List accounts."""
        return paginated(services.list_accounts(server_uow(), args.get("q"), paging(args)))

    @blp.arguments(SuperAdminAccountArgs)
    @blp.response(201, AccountSchema)
    def post(self, args):
        """Create an account."""
        account = services.create_account(server_uow(), args, deps().settings.provider,
                                max_attempts=deps().settings.max_attempts)
        return created(account, f"/api/accounts/{account.id}")


@blp.route("/<int:account_id>")
class AccountById(MethodView):
    @blp.response(200, AccountSchema)
    def get(self, account_id):
        """Fetch an account."""
        return services.get_account(server_uow(), account_id)

    @blp.arguments(SuperAdminAccountArgs)
    @blp.response(204)
    def patch(self, args, account_id):
        """Update an account."""
        services.update_account(server_uow(), account_id, args, allow_permissions=True,
                                provider_settings=deps().settings.provider,
                                max_attempts=deps().settings.max_attempts)

    @blp.response(204)
    def delete(self, account_id):
        """Delete an account that has no contacts, callouts or access tokens."""
        services.delete_account(server_uow(), account_id)


@own_blp.route("")
class OwnAccount(MethodView):
    @own_blp.response(200, AccountSchema)
    def get(self):
        """Fetch the caller's account."""
        return services.get_account(uow(), g.account.id)

    @own_blp.arguments(AccountArgs)
    @own_blp.response(204)
    def patch(self, args):
        """Update the caller's account (provider credentials, settings, metadata)."""
        services.update_account(uow(), g.account.id, args, allow_permissions=False,
                                provider_settings=deps().settings.provider,
                                max_attempts=deps().settings.max_attempts)
