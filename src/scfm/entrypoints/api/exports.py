"""CSV exports of lists: /api/contacts.csv, and a callout's contacts, participations and phone calls."""
from __future__ import annotations

import csv
import io
import re
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


# A cell a spreadsheet would run as a formula (OWASP's "CSV injection": one of these first, unless a plain number
# such as +85512345678 or -3, which a spreadsheet reads as the number it is) gets an apostrophe first, which
# spreadsheets hide: tenants' data (contact metadata, imported rows, call flow results) is opened by others.
FORMULA_FIRST = frozenset("=+-@\t\r")
PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def csv_lines(rows: Iterable[list[str]]) -> Iterator[bytes]:
    """CSV (RFC 4180: comma, CRLF, quotes where needed) in UTF-8, a few hundred rows per piece; no cell a
    spreadsheet would run as a formula."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    plain_number = PLAIN_NUMBER.fullmatch
    for index, row in enumerate(rows):
        writer.writerow([("'" + cell if cell[:1] in FORMULA_FIRST and not plain_number(cell) else cell)
                         for cell in row])
        if index % 500 == 499:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def csv_response(rows: Iterable[list[str]], filename: str) -> Response:
    """A download of tenant data: no cache keeps it (a browser's on a shared computer, a proxy's)."""
    return Response(csv_lines(rows), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"})


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
