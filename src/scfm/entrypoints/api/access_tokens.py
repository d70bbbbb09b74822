"""/api/access_tokens: tokens of the caller's account; a super admin may issue one for another."""
from __future__ import annotations

from flask import g
from flask.views import MethodView
from marshmallow import fields

from scfm.entrypoints.api.http import (
    Blueprint, MetadataArgs, PaginationArgs, ResourceSchema, created, paginated, paging, uow,
)
from scfm.services import accounts as services

blp = Blueprint("access_tokens", __name__, url_prefix="/api/access_tokens", description="Access tokens")


class AccessTokenSchema(ResourceSchema):
    account_id = fields.Integer()


class CreatedAccessTokenSchema(AccessTokenSchema):
    token = fields.String(metadata={"description": "Shown once: only its hash is stored"})


class AccessTokenArgs(MetadataArgs):
    account_sid = fields.Integer(metadata={"description": "Super admins: the account to issue the token for"})
    account_id = fields.Integer(metadata={"description": "Same as account_sid"})


@blp.route("")
class AccessTokens(MethodView):
    @blp.arguments(PaginationArgs, location="query")
    @blp.response(200, AccessTokenSchema(many=True))
    def get(self, args):
        """List the access tokens of the caller's account."""
        return paginated(services.list_access_tokens(uow(), args.get("q"), paging(args)))

    @blp.arguments(AccessTokenArgs)
    @blp.response(201, CreatedAccessTokenSchema)
    def post(self, args):
        """Create an access token; the response is the only place its value is shown."""
        token = services.create_access_token(uow(), g.account, args)
        return created(token, f"/api/access_tokens/{token.id}")


@blp.route("/<int:token_id>")
class AccessTokenById(MethodView):
    @blp.response(200, AccessTokenSchema)
    def get(self, token_id):
        """Fetch an access token (without its value)."""
        return services.get_access_token(uow(), token_id)

    @blp.response(204)
    def delete(self, token_id):
        """Delete an access token: it stops working at once."""
        services.delete_access_token(uow(), token_id)
