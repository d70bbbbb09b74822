"""HTTP conventions shared by every resource: parameters, errors, pagination, auth, serialization."""
from __future__ import annotations

import json
import math
import re
from datetime import timezone
from urllib.parse import parse_qsl, urlencode

from flask import Request, g, request
from flask_smorest import Blueprint as SmorestBlueprint
from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate
from webargs.flaskparser import FlaskParser

from scfm.domain.errors import ValidationFailed
from scfm.domain.values import MAX_DOCUMENT_BYTES, MAX_MSISDN_LENGTH, document_size
from scfm.services.common import MAX_PER_PAGE, PageRequest


class BadRequest(Exception):
    """Malformed JSON or form: 400 {"errors": {"base": [message]}}."""


# Bounds of every input: how deep a body or query may nest, and how long each kind of string may be.
MAX_DEPTH = 32
SID_LENGTH = 64  # Twilio's SIDs have 34 characters, Somleng's (UUIDs) 36
SECRET_LENGTH = 255
NAME_LENGTH = 255  # call flow logic names, host names
URL_LENGTH = 2048


def _shown(key: str) -> str:
    """A parameter name as an error message quotes it: never the whole of a megabyte-long name."""
    return key if len(key) <= 100 else key[:100] + "..."


# ---------------------------------------------------------------- parameters

_KEY = re.compile(r"^([^\[\]]*)((?:\[[^\[\]]*\])*)$")


def _key_parts(key: str) -> list[str]:
    if key.startswith("["):  # `[metadata][name]` means `metadata[name]` (getting-started uses it)
        key = re.sub(r"^\[([^\[\]]*)\]", r"\1", key, count=1)
    match = _KEY.match(key)
    if not match or not match.group(1):
        raise BadRequest(f"malformed parameter name: {_shown(key)}")
    parts = [match.group(1)] + re.findall(r"\[([^\[\]]*)\]", match.group(2))
    if len(parts) > MAX_DEPTH:
        raise BadRequest(f"parameter name nested too deeply (maximum is {MAX_DEPTH} levels): {_shown(key)}")
    return parts


def nest(pairs) -> dict:
    """Rails-style nesting: `a[b][c]=1` -> {"a": {"b": {"c": "1"}}}; `a[]=x&a[]=y` -> {"a": ["x", "y"]}."""
    root: dict = {}
    for key, value in pairs:
        parts = _key_parts(key)
        node = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            following = None if last else parts[index + 1]
            if last:
                if part == "":
                    raise BadRequest(f"malformed parameter name: {_shown(key)}")
                if isinstance(node.get(part), dict):
                    raise BadRequest(f"conflicting parameters: {_shown(key)}")
                node[part] = value
            elif following == "" and index + 1 == len(parts) - 1:
                existing = node.setdefault(part, [])
                if not isinstance(existing, list):
                    raise BadRequest(f"conflicting parameters: {_shown(key)}")
                existing.append(value)
                break
            else:
                if part == "":
                    raise BadRequest(f"malformed parameter name: {_shown(key)}")
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise BadRequest(f"conflicting parameters: {_shown(key)}")
                node = child
    return root


def _reject_constant(name: str):
    raise BadRequest(f"malformed JSON: {name} is not a number JSON allows")


def check_depth(value, where: str = "the body") -> None:
    """Refuse documents nested deeper than MAX_DEPTH (counted without recursion: the point is to avoid it)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadRequest(f"{where} is nested too deeply (maximum is {MAX_DEPTH} levels)")
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def check_text(value, where: str = "parameters"):
    """Refuse what PostgreSQL cannot store: NUL characters, lone surrogates, non-finite numbers."""
    if _storable_parameters(value):
        return value
    return _check_text(value, where)


def _storable_parameters(value) -> bool:
    """Whether `value` is a query's or a form's parameters (names to lists of strings), every one storable:
    checked at once, as one string (every status callback's form is; anything else is checked piece by piece,
    to name the first fault)."""
    if type(value) is not dict or not all(type(values) is list for values in value.values()):
        return False
    try:
        text = "".join([*value, *(item for values in value.values() for item in values)])
    except TypeError:  # a value that is not a string
        return False
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_text(value, where: str):
    if isinstance(value, str):
        if "\x00" in value:
            raise BadRequest(f"{where} must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(f"{where} must be valid UTF-8") from None
    elif isinstance(value, float) and not math.isfinite(value):
        raise BadRequest(f"{where} must not contain NaN or infinite numbers")
    elif isinstance(value, dict):
        for key, inner in value.items():
            _check_text(key, where)
            _check_text(inner, where)
    elif isinstance(value, list):
        for inner in value:
            _check_text(inner, where)
    return value


def body_params(req: Request) -> dict:
    if "scfm_body" in g:
        return g.scfm_body
    raw = req.get_data(cache=True)
    if req.mimetype == "application/json" or (req.mimetype in ("", None) and raw.lstrip()[:1] in (b"{", b"[")):
        try:
            data = json.loads(raw or b"{}", parse_constant=_reject_constant)
        except RecursionError:
            raise BadRequest(f"the body is nested too deeply (maximum is {MAX_DEPTH} levels)") from None
        except (ValueError, UnicodeDecodeError) as error:
            raise BadRequest(f"malformed JSON: {error}") from None
        if not isinstance(data, dict):
            raise BadRequest("the JSON body must be an object")
        check_depth(data)
    elif not raw:
        data = {}
    elif req.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data", "", None):
        data = nest(req.form.items(multi=True)) if req.mimetype else nest(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    else:
        raise BadRequest(f"unsupported content type: {req.mimetype}")
    g.scfm_body = check_text(data, "the body")
    return data


def query_params(req: Request) -> dict:
    return check_text(nest(req.args.items(multi=True)), "the query")


RAILS_MESSAGES = [
    ("Missing data for required field.", "can't be blank"),
    ("Field may not be null.", "can't be blank"),
    ("Unknown field.", "is not a known parameter"),
    ("Must be one of", "is not included in the list"),
    ("Not a valid", "is invalid"),
    ("Invalid value.", "is invalid"),
    ("Must be greater", "must be greater than 0"),
    ("Longer than maximum length", None),
]


def _rails_message(message: str) -> str:
    for prefix, replacement in RAILS_MESSAGES:
        if message.startswith(prefix):
            if replacement is None:  # "Longer than maximum length 64."
                return f"is too long (maximum is {message.rstrip('.').rsplit(' ', 1)[-1]} characters)"
            return replacement
    return message


def flatten_errors(messages, prefix: str = "") -> dict[str, list[str]]:
    flat: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}[{key}]" if prefix else str(key)
            if isinstance(value, dict):
                flat.update(flatten_errors(value, name))
            else:
                items = value if isinstance(value, list) else [value]
                flat.setdefault(name, []).extend(_rails_message(str(m)) for m in items)
    else:
        flat.setdefault(prefix or "base", []).append(_rails_message(str(messages)))
    return flat


class RailsParser(FlaskParser):
    """Bodies are JSON or Rails-style forms; query strings nest the same way."""

    DEFAULT_UNKNOWN_BY_LOCATION = {"json": None, "query": None, "querystring": None}

    def load_json(self, req, schema):
        return body_params(req)

    def load_querystring(self, req, schema):
        return query_params(req)

    def handle_error(self, error, req, schema, *, error_status_code, error_headers):
        messages = error.messages
        if isinstance(messages, dict) and len(messages) == 1 and next(iter(messages)) in ("json", "query", "querystring"):
            messages = next(iter(messages.values()))
        raise ValidationFailed(flatten_errors(messages))


class Blueprint(SmorestBlueprint):
    ARGUMENTS_PARSER = RailsParser()


# ---------------------------------------------------------------- schemas

class Timestamp(fields.DateTime):
    """UTC ISO 8601 with milliseconds: 2017-11-23T05:22:07.519Z."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class JsonObject(fields.Raw):
    """A JSON object (metadata, settings, parameters) of at most MAX_DOCUMENT_BYTES."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, dict):
            raise ValidationError("is invalid")
        if document_size(value) > MAX_DOCUMENT_BYTES:
            raise ValidationError(f"is too large (maximum is {MAX_DOCUMENT_BYTES} bytes)")
        return value


def bounded_string(max_length: int, **kwargs) -> fields.String:
    """A string parameter of at most `max_length` characters (longer is a 422 naming the field)."""
    return fields.String(validate=validate.Length(max=max_length), **kwargs)


def msisdn_string(**kwargs) -> fields.String:
    return bounded_string(MAX_MSISDN_LENGTH, metadata={"description": "Phone number, normalized to E.164"}, **kwargs)


class ArgsSchema(Schema):
    class Meta:
        unknown = RAISE


class ResourceSchema(Schema):
    id = fields.Integer(dump_only=True)
    metadata = fields.Dict(dump_only=True)
    created_at = Timestamp(dump_only=True)
    updated_at = Timestamp(dump_only=True)

    class Meta:
        unknown = EXCLUDE
        ordered = True


class MetadataArgs(ArgsSchema):
    metadata = JsonObject(metadata={"description": "A JSON object"})
    metadata_merge_mode = fields.String(validate=validate.OneOf(["merge", "deep_merge", "replace"]),
                                        metadata={"description": "merge (default), deep_merge or replace"})


def event_args(resource: str, *events: str) -> type:
    """The body of a `*_events` route: one of `events`."""
    event = fields.String(required=True, validate=validate.OneOf(events))
    return type(f"{resource}EventArgs", (ArgsSchema,), {"event": event})


class ErrorSchema(Schema):
    """Every error answer: {"status", "error"} for 4xx/5xx without details, {"errors": {...}} for 400/422."""

    status = fields.Integer()
    error = fields.String()
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))


MAX_OFFSET = 2**62


class PaginationArgs(ArgsSchema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    per_page = fields.Integer(load_default=25, validate=validate.Range(min=1))
    q = fields.Dict(metadata={"description": "Filters, e.g. q[metadata][gender]=f", "style": "deepObject",
                              "explode": True})
    access_token = bounded_string(SECRET_LENGTH, load_only=True)


def paging(args: dict) -> PageRequest:
    page = args.get("page", 1)
    per_page = args.get("per_page", 25)
    if page < 1:
        raise ValidationFailed.on("page", "must be greater than 0")
    if per_page < 1:
        raise ValidationFailed.on("per_page", "must be greater than 0")
    per_page = min(per_page, MAX_PER_PAGE)
    if (page - 1) * per_page > MAX_OFFSET:
        raise ValidationFailed.on("page", "is too large")
    return PageRequest(page=page, per_page=per_page)


def paginated(page):
    """(items, 200, headers) with Per-Page, Total and an RFC 8288 Link that keeps the query, but never a token."""
    last = max(1, -(-page.total // page.per_page))
    base = request.base_url

    def link(number: int, rel: str) -> str:
        args = [(k, v) for k, v in request.args.items(multi=True) if k not in ("page", "access_token")]
        args.append(("page", str(number)))
        return f'<{base}?{urlencode(args)}>; rel="{rel}"'

    links = [link(1, "first")]
    if page.page > 1:
        links.append(link(min(page.page - 1, last), "prev"))
    if page.page < last:
        links.append(link(page.page + 1, "next"))
    links.append(link(last, "last"))
    headers = {"Per-Page": str(page.per_page), "Total": str(page.total), "Link": ", ".join(links)}
    if page.total_is_estimate:
        headers["Total-Estimated"] = "true"
    return page.items, 200, headers


def created(entity, path: str):
    return entity, 201, {"Location": path}


def current_account():
    return g.account


def deps():
    from flask import current_app

    return current_app.extensions["scfm"]


def uow():
    """A unit of work scoped to the caller's account."""
    return deps().uow(g.account.id)


def server_uow():
    """A unit of work over every account's records: for the super admin's routes only."""
    return deps().uow(None)


def call_flows():
    return deps().call_flows
