"""/api/contact_imports: upload a CSV file of contacts, follow its import, and download the refused rows."""
from __future__ import annotations

from flask import g, request
from flask.views import MethodView
from marshmallow import ValidationError, fields, validate
from werkzeug.exceptions import LengthRequired

from scfm.domain.errors import ValidationFailed
from scfm.entrypoints.api.exports import csv_response
from scfm.entrypoints.api.http import (
    NAME_LENGTH, SECRET_LENGTH, ArgsSchema, BadRequest, Blueprint, PaginationArgs, ResourceSchema, Timestamp,
    bounded_string, check_text, created, deps, flatten_errors, paginated, paging, uow,
)
from scfm.services import contact_imports as services

blp = Blueprint("contact_imports", __name__, url_prefix="/api", description="Contact imports")

# The route whose body is a file: read as it arrives, up to SCFM_MAX_IMPORT_BYTES (the app factory skips
# the hooks that read other bodies whole).
UPLOAD_ENDPOINT = "contact_imports.ContactImports"
CSV_TYPES = ("text/csv", "application/csv", "text/plain")


class ContactImportSchema(ResourceSchema):
    account_id = fields.Integer()
    status = fields.String()
    filename = fields.String(allow_none=True)
    msisdn_column = fields.Function(lambda i: i.header[i.parsed_header().msisdn_index] if i.header else None)
    default_country = fields.Function(lambda i: i.options.get("default_country"))
    metadata_merge_mode = fields.Function(lambda i: i.options.get("metadata_merge_mode"))
    update_existing = fields.Function(lambda i: i.options.get("update_existing"))
    callout_id = fields.Integer(allow_none=True)
    columns = fields.List(fields.String(), attribute="header")
    rows_total = fields.Integer()
    rows_read = fields.Integer()
    rows_created = fields.Integer()
    rows_updated = fields.Integer()
    rows_unchanged = fields.Integer()
    rows_refused = fields.Integer()
    progress = fields.Float()
    error_message = fields.String(allow_none=True)
    started_at = Timestamp(allow_none=True)
    finished_at = Timestamp(allow_none=True)


class ContactImportArgs(ArgsSchema):
    """The options, in the query string (or as fields of a multipart form)."""

    msisdn_column = bounded_string(NAME_LENGTH, metadata={"description": "default: msisdn, phone or phone_number"})
    default_country = bounded_string(2, metadata={"description": "ISO 3166 code for numbers without a country "
                                                                 "code: 0962345678 with KH is +855962345678"})
    metadata_merge_mode = fields.String(validate=validate.OneOf(["merge", "deep_merge", "replace"]),
                                        metadata={"description": "for contacts that exist: merge (default), "
                                                                 "deep_merge or replace"})
    update_existing = fields.Boolean(metadata={"description": "false: contacts that exist are left alone"})
    callout_id = fields.Integer(metadata={"description": "add every imported contact to this callout"})
    access_token = bounded_string(SECRET_LENGTH, load_only=True)


_UPLOAD = {"required": True, "content": {
    "text/csv": {"schema": {"type": "string"}},
    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}},
                                       "required": ["file"]}},
}}


def _upload():
    """The options of a multipart form's fields, and the file as a binary stream (name, stream)."""
    if request.content_length is None and "chunked" in request.headers.get("Transfer-Encoding", "") \
            and not request.environ.get("wsgi.input_terminated"):
        raise LengthRequired()
    if request.mimetype == "multipart/form-data":
        form = check_text(request.form.to_dict(), "the body")
        try:
            options = ContactImportArgs().load(form)
        except ValidationError as error:
            raise ValidationFailed(flatten_errors(error.messages)) from None
        upload = request.files.get("file")
        if upload is None:
            raise ValidationFailed.on("file", "can't be blank")
        return options, upload.filename, upload.stream
    if request.mimetype in CSV_TYPES:
        return {}, None, request.stream
    raise BadRequest(f"unsupported content type: {request.mimetype or 'none'} (send text/csv, or a multipart "
                     "form with the file as `file`)")


@blp.route("/contact_imports")
class ContactImports(MethodView):
    @blp.arguments(PaginationArgs, location="query")
    @blp.response(200, ContactImportSchema(many=True))
    def get(self, args):
        """List contact imports, newest last; filter with q[status] and q[callout_id]."""
        return paginated(services.list_imports(uow(), args.get("q"), paging(args)))

    @blp.arguments(ContactImportArgs, location="query")
    @blp.doc(requestBody=_UPLOAD)
    @blp.response(201, ContactImportSchema)
    def post(self, args):
        """Import contacts from a CSV file: multipart `file=@contacts.csv`, or the body as text/csv."""
        options, filename, stream = _upload()
        contact_import = services.create_import(uow(), deps().jobs, g.account.id, {**args, **options}, stream,
                                                filename)
        return created(contact_import, f"/api/contact_imports/{contact_import.id}")


@blp.route("/contact_imports/<int:contact_import_id>")
class ContactImportById(MethodView):
    @blp.response(200, ContactImportSchema)
    def get(self, contact_import_id):
        """Fetch a contact import: its status, counts and progress."""
        return services.get_import(uow(), contact_import_id)


@blp.route("/contact_imports/<int:contact_import_id>/errors.csv", methods=["GET"])
@blp.doc(responses={200: {"description": "line, the file's columns, reason",
                          "content": {"text/csv": {"schema": {"type": "string"}}}}})
def errors(contact_import_id):
    """The rows the import refused: line number, original cells and reason."""
    rows = services.import_errors(deps().uow, g.account.id, contact_import_id)
    return csv_response(rows, f"contact-import-{contact_import_id}-errors.csv")
