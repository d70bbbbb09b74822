"""CSV exports of lists: /api/contacts.csv, and a callout's contacts, participations and phone calls."""
from __future__ import annotations

import csv
import io
from typing import Iterable, Iterator

from flask import Response, g

from scfm.entrypoints.api.http import SECRET_LENGTH, ArgsSchema, Blueprint, bounded_string, deps
from scfm.services import exports as services
from marshmallow import fields

blp = Blueprint("exports", __name__, url_prefix="/api", description="CSV exports of lists")


class ExportArgs(ArgsSchema):
    q = fields.Dict(metadata={"description": "The filters of the list, e.g. q[metadata][gender]=f",
                              "style": "deepObject", "explode": True})
    access_token = bounded_string(SECRET_LENGTH, load_only=True)


def csv_lines(rows: Iterable[list[str]]) -> Iterator[bytes]:
    """CSV (RFC 4180: comma, CRLF, quotes where needed) in UTF-8, a few hundred rows per piece."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for index, row in enumerate(rows):
        writer.writerow(row)
        if index % 500 == 499:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def csv_response(rows: Iterable[list[str]], filename: str) -> Response:
    return Response(csv_lines(rows), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _export(kind: str, args: dict, filename: str, callout_id=None) -> Response:
    rows = services.export(deps().uow, g.account.id, kind, args.get("q"), callout_id)
    return csv_response(rows, filename)


_CSV = {200: {"description": "CSV, a header line first", "content": {"text/csv": {"schema": {"type": "string"}}}}}


@blp.route("/contacts.csv", methods=["GET"])
@blp.arguments(ExportArgs, location="query")
@blp.doc(responses=_CSV)
def contacts(args):
    """Every contact the filters match, metadata as dotted columns (the same q[...] as the list)."""
    return _export("contacts", args, "contacts.csv")


@blp.route("/callouts/<int:callout_id>/contacts.csv", methods=["GET"])
@blp.arguments(ExportArgs, location="query")
@blp.doc(responses=_CSV)
def callout_contacts(args, callout_id):
    """Every contact of a callout the filters match."""
    return _export("contacts", args, f"callout-{callout_id}-contacts.csv", callout_id)


@blp.route("/callouts/<int:callout_id>/callout_participations.csv", methods=["GET"])
@blp.arguments(ExportArgs, location="query")
@blp.doc(responses=_CSV)
def callout_participations(args, callout_id):
    """Every participation of a callout the filters match."""
    return _export("callout_participations", args, f"callout-{callout_id}-callout_participations.csv", callout_id)


@blp.route("/callouts/<int:callout_id>/phone_calls.csv", methods=["GET"])
@blp.arguments(ExportArgs, location="query")
@blp.doc(responses=_CSV)
def phone_calls(args, callout_id):
    """Every phone call of a callout the filters match."""
    return _export("phone_calls", args, f"callout-{callout_id}-phone_calls.csv", callout_id)
