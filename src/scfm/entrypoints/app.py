"""The Flask app factory: blueprints, auth, and the one mapping of errors to HTTP answers."""
from __future__ import annotations

import logging
import traceback

from flask import Flask, Response, g, jsonify, render_template, request, send_from_directory
from flask_smorest import Api
from redis.exceptions import RedisError
from swagger_ui_bundle import swagger_ui_path
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException, LengthRequired, RequestEntityTooLarge

from scfm.adapters.postgres.db import described
from scfm.bootstrap import Deps, bootstrap
from scfm.domain.errors import NotFound, ValidationFailed
from scfm.entrypoints import dashboard
from scfm.entrypoints.api import (
    access_tokens, accounts, batch_operations, callout_participations, callouts, contact_imports, contacts, exports,
    phone_calls, remote_phone_call_events, statistics,
)
from scfm.entrypoints.api.http import BadRequest, ErrorSchema, JsonObject, check_text
from scfm.services import accounts as account_services
from scfm.services.remote_events import Forbidden

log = logging.getLogger(__name__)

# Public routes; the provider webhook (POST /api/remote_phone_call_events) authenticates by signature.
PUBLIC_PATHS = ("/api/openapi.json", "/api/docs")
BLUEPRINTS = [
    accounts.blp, accounts.own_blp, access_tokens.blp, contacts.blp, callouts.blp, callout_participations.blp,
    phone_calls.blp, remote_phone_call_events.blp, batch_operations.blp, contact_imports.blp, exports.blp,
    statistics.blp,
]
WEBHOOK_PATH = "/api/remote_phone_call_events"
SWAGGER_UI_ASSETS = "/swagger-ui"  # Swagger UI's files, from the swagger-ui-bundle package: no CDN


def _token_from(req) -> str | None:
    if req.authorization and req.authorization.type == "basic":
        return req.authorization.username
    header = req.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return req.args.get("access_token")


def _error(status: int, message: str) -> Response:
    response = jsonify({"status": status, "error": message})
    response.status_code = status
    return response


class ScfmApi(Api):
    ERROR_SCHEMA = ErrorSchema


def _document_authentication(api: Api) -> None:
    """Every route but the webhook answers 401 (empty body) without a valid access token."""
    for path, operations in api.spec._paths.items():
        for method, operation in operations.items():
            if not (path == WEBHOOK_PATH and method == "post") and isinstance(operation, dict):
                operation.setdefault("responses", {})["401"] = {
                    "description": "Missing or unknown access token (empty body, WWW-Authenticate header)"}


def create_app(deps: Deps | None = None) -> Flask:
    deps = deps or bootstrap()
    app = Flask(__name__)
    app.config.update(
        API_TITLE="scfm", API_VERSION="1", OPENAPI_VERSION="3.0.3", OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json", OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=f"{SWAGGER_UI_ASSETS}/",
        MAX_CONTENT_LENGTH=deps.settings.max_body_bytes, JSON_SORT_KEYS=False,
        API_SPEC_OPTIONS={
            "components": {"securitySchemes": {"accessToken": {"type": "http", "scheme": "basic"}}},
            "security": [{"accessToken": []}],
        },
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]  # the default provider has it
    app.extensions["scfm"] = deps
    api = ScfmApi(app)
    api.register_field(JsonObject, "object", None)
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint)
    _document_authentication(api)
    dashboard.register(app, deps.settings)

    @app.route(f"{SWAGGER_UI_ASSETS}/<path:filename>", endpoint="swagger_ui_assets")
    def swagger_ui_assets(filename):
        return send_from_directory(swagger_ui_path, filename, max_age=86400)

    def reads_its_own_body() -> bool:
        """An upload of contacts: the view reads the file as it arrives, with the limit of imports."""
        return request.method == "POST" and request.endpoint in (contact_imports.UPLOAD_ENDPOINT,
                                                                 dashboard.views.UPLOAD_ENDPOINT)

    @app.before_request
    def refuse_oversized_streamed_body():
        """A chunked body has no Content-Length for werkzeug to check: read it, up to the limit, and refuse
        it whole when more follows (werkzeug alone stops at the limit and hands on what it read)."""
        if reads_its_own_body():
            request.max_content_length = deps.settings.max_import_bytes
            return
        if request.content_length is not None or "chunked" not in request.headers.get("Transfer-Encoding", ""):
            return
        if not request.environ.get("wsgi.input_terminated"):
            raise LengthRequired()  # a server that cannot end a chunked body would hand us an empty one
        limit = app.config["MAX_CONTENT_LENGTH"]
        if len(request.get_data(cache=True)) >= limit and request.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()

    @app.before_request
    def refuse_unstorable_text():
        check_text(request.args.to_dict(flat=False), "the query")
        if reads_its_own_body():
            return
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            request.get_data(cache=True)  # keep the raw body: the parameter parser reads it again
            check_text(request.form.to_dict(flat=False), "the body")

    @app.before_request
    def authenticate():
        if not request.path.startswith("/api/") or request.path.startswith(PUBLIC_PATHS):
            return None
        if request.method == "POST" and request.path.rstrip("/") == WEBHOOK_PATH:
            return None
        account = account_services.authenticate(deps.uow(None), _token_from(request))
        if account is None:
            return Response(status=401, headers={"WWW-Authenticate": 'Basic realm="scfm"'})
        g.account = account
        return None

    @app.errorhandler(NotFound)
    def not_found(_exc):
        return _error(404, "Not Found")

    @app.errorhandler(ValidationFailed)
    def unprocessable(error):
        return jsonify({"errors": error.errors}), 422

    @app.errorhandler(Forbidden)
    def forbidden(_exc):
        return _error(403, "Forbidden")

    @app.errorhandler(BadRequest)
    def bad_request(error):
        return jsonify({"errors": {"base": [str(error)]}}), 400

    @app.errorhandler(OperationalError)
    @app.errorhandler(RedisError)
    def unavailable(error):
        if (getattr(getattr(error, "orig", None), "pgcode", None) or "").startswith("54"):
            return unstorable(error)  # program_limit_exceeded (e.g. an index row too large): the value's fault
        log.warning("backing service unavailable: %s", described(error))
        return _error(503, "Service Unavailable")

    @app.errorhandler(DataError)
    def unstorable(error):
        log.info("refused a value the database cannot store: %s", described(error))
        return jsonify({"errors": {"base": ["a value is out of range or cannot be stored"]}}), 400

    @app.errorhandler(DBAPIError)
    def database_error(error):
        if getattr(error, "connection_invalidated", False):
            return unavailable(error)
        log.error("database error %s\n%s", described(error), "".join(traceback.format_tb(error.__traceback__)))
        return _error(500, "Internal Server Error")

    @app.errorhandler(HTTPException)
    def http_error(error):
        if error.code == 401:
            return Response(status=401, headers={"WWW-Authenticate": 'Basic realm="scfm"'})
        if not request.path.startswith("/api/"):  # the dashboard's pages
            return render_template("error.html", title=error.name, errors=[]), error.code or 500
        if error.code == 404:
            return _error(404, "Not Found")
        if error.code == 422:  # webargs, when our parser did not raise first
            messages = getattr(error, "data", {}).get("messages", {})
            return jsonify({"errors": messages or {"base": ["is invalid"]}}), 422
        return _error(error.code or 500, error.name)

    app.wsgi_app = remote_phone_call_events.WebhookRoute(app, deps)  # type: ignore[method-assign]
    return app
