"""Bounded input (issue 9): a size and a type for every field, bounded nesting, and one 413 for every body
over the limit, chunked or sized. Each answer is a 4xx naming what is wrong, never a 5xx, and nothing is kept."""
from __future__ import annotations

import io
import json
import logging

import pytest

from tests.integration.test_phone_calls_api import DEMO

MIB = 1024 * 1024
SECRET = "auth-token-that-must-never-be-logged"


def _json(api, method: str, path: str, body) -> object:
    return getattr(api, method)(path, data=json.dumps(body), content_type="application/json")


def _deep(levels: int) -> dict:
    """{"a": {"a": ... {}}}: `levels` objects, the outermost included."""
    text = '{"a": ' * (levels - 1) + "{}" + "}" * (levels - 1)
    return json.loads(text) if levels < 900 else text  # json.loads itself gives up near 1,000 levels


@pytest.fixture
def records(api):
    contact = api.post("/api/contacts", data={"msisdn": "+252662345678"}).get_json()["id"]
    callout = api.post("/api/callouts").get_json()["id"]
    participation = api.post(f"/api/callouts/{callout}/callout_participations",
                             data={"contact_id": contact}).get_json()["id"]
    phone_call = api.post(f"/api/callout_participations/{participation}/phone_calls", data=DEMO).get_json()["id"]
    return {"contact": contact, "callout": callout, "participation": participation, "phone_call": phone_call}


# ---------------------------------------------------------------- case 5: long strings

def test_a_20000_character_sid_is_a_422_naming_the_field_and_nothing_of_it_is_logged(api, admin, caplog):
    caplog.set_level(logging.DEBUG)
    body = {"somleng_account_sid": "A" * 20000, "somleng_auth_token": SECRET}
    for response in (_json(api, "patch", "/api/account", body), _json(admin, "post", "/api/accounts", body)):
        assert response.status_code == 422, response.get_data(as_text=True)
        assert response.get_json()["errors"] == {
            "somleng_account_sid": ["is too long (maximum is 64 characters)"]}
    assert api.get("/api/account").get_json()["somleng_account_sid"] is None
    assert SECRET not in caplog.text and "AAAAAAAAAA" not in caplog.text


LONG_STRINGS = [  # (path, field, maximum): every string field a tenant sets, one character too long
    ("/api/account", "twilio_account_sid", 64), ("/api/account", "somleng_account_sid", 64),
    ("/api/account", "twilio_auth_token", 255), ("/api/account", "somleng_auth_token", 255),
    ("/api/account", "somleng_api_host", 255), ("/api/account", "somleng_api_base_url", 2048),
    ("/api/contacts/{contact}", "msisdn", 32), ("/api/callouts/{callout}", "call_flow_logic", 255),
    ("/api/callout_participations/{participation}", "msisdn", 32),
    ("/api/callout_participations/{participation}", "call_flow_logic", 255),
    ("/api/phone_calls/{phone_call}", "msisdn", 32), ("/api/phone_calls/{phone_call}", "call_flow_logic", 255),
]


@pytest.mark.parametrize("path, field, maximum", LONG_STRINGS)
def test_every_string_field_has_a_maximum_length(api, records, path, field, maximum):
    response = api.patch(path.format(**records), data={field: "1" * (maximum + 1)})
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.get_json()["errors"] == {field: [f"is too long (maximum is {maximum} characters)"]}


def test_an_over_long_msisdn_is_refused_when_created_and_in_a_filter(api):
    response = api.post("/api/contacts", data={"msisdn": "+" + "2" * 20000})
    assert response.status_code == 422 and response.get_json()["errors"] == {
        "msisdn": ["is too long (maximum is 32 characters)"]}
    assert api.get("/api/contacts?q[msisdn]=" + "2" * 20000).status_code == 422
    assert api.get("/api/contacts").headers["Total"] == "0"


# ---------------------------------------------------------------- case 10: JSON documents

BIG = {"pad": "x" * (900 * 1024)}


@pytest.mark.parametrize("path, body, field", [
    ("/api/account", {"settings": BIG}, "settings"),
    ("/api/batch_operations", {"type": "BatchOperation::PhoneCallQueue", "parameters": {"limit": 1, **BIG}},
     "parameters"),
    ("/api/batch_operations", {"type": "BatchOperation::PhoneCallCreate",
                               "parameters": {"remote_request_params": {"from": "1234", "twiml": "x" * 900000}}},
     "parameters"),
    ("/api/phone_calls/{phone_call}", {"remote_request_params": {"from": "1234", "twiml": "x" * 900000}},
     "remote_request_params"),
    ("/api/contacts/{contact}", {"metadata": BIG}, "metadata"),
])
def test_json_documents_are_at_most_64_kib(api, records, path, body, field):
    method = "post" if path == "/api/batch_operations" else "patch"
    response = _json(api, method, path.format(**records), body)
    assert response.status_code == 422, response.get_data(as_text=True)[:300]
    assert response.get_json()["errors"] == {field: ["is too large (maximum is 65536 bytes)"]}
    assert api.get("/api/batch_operations").headers["Total"] == "0"


def test_metadata_merged_in_small_parts_cannot_grow_past_the_bound(api, records):
    path = f"/api/contacts/{records['contact']}"
    assert _json(api, "patch", path, {"metadata": {"a": "x" * 40000}}).status_code == 204
    response = _json(api, "patch", path, {"metadata": {"b": "x" * 40000}})
    assert response.status_code == 422 and "metadata" in response.get_json()["errors"]
    assert set(api.get(path).get_json()["metadata"]) == {"a"}


@pytest.mark.parametrize("value", [{"a": "1234"}, ["1234"], 1234, True])
def test_remote_request_params_from_must_be_a_string(api, records, value):
    call = _json(api, "patch", f"/api/phone_calls/{records['phone_call']}",
                 {"remote_request_params": {"from": value, "url": "https://demo.twilio.com/docs/voice.xml"}})
    assert call.status_code == 422
    assert call.get_json()["errors"] == {"remote_request_params[from]": ["is invalid"]}
    operation = _json(api, "post", "/api/batch_operations", {
        "type": "BatchOperation::PhoneCallCreate",
        "parameters": {"remote_request_params": {"from": value, "url": "https://demo.twilio.com/docs/voice.xml"}}})
    assert operation.status_code == 422
    assert operation.get_json()["errors"] == {"remote_request_params[from]": ["is invalid"]}


def test_remote_request_params_of_the_providers_other_types_are_kept(api, records):
    params = {"from": "1234", "url": "https://demo.twilio.com/docs/voice.xml", "timeout": 30, "record": True,
              "status_callback_event": ["initiated", "completed"]}
    path = f"/api/phone_calls/{records['phone_call']}"
    assert _json(api, "patch", path, {"remote_request_params": params}).status_code == 204
    assert api.get(path).get_json()["remote_request_params"] == params


# ---------------------------------------------------------------- case 7: nesting and types

@pytest.mark.parametrize("levels", [32, 1000, 100000])
def test_a_json_body_nested_too_deeply_is_a_400(api, levels):
    deep = _deep(levels)
    body = '{"msisdn": "+252662345678", "metadata": ' + (deep if isinstance(deep, str) else json.dumps(deep)) + "}"
    response = api.post("/api/contacts", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["errors"]["base"] == ["the body is nested too deeply (maximum is 32 levels)"]
    assert api.get("/api/contacts").headers["Total"] == "0"


def test_a_json_body_32_levels_deep_is_accepted(api):
    response = _json(api, "post", "/api/contacts", {"msisdn": "+252662345678", "metadata": _deep(31)})
    assert response.status_code == 201


@pytest.mark.parametrize("levels", [32, 1000])
def test_form_brackets_nested_too_deeply_are_a_400(api, levels):
    name = "metadata" + "[a]" * levels
    response = api.post("/api/contacts", data={"msisdn": "+252662345678", name: "1"})
    assert response.status_code == 400
    assert response.get_json()["errors"]["base"][0].startswith(
        "parameter name nested too deeply (maximum is 32 levels)")
    assert api.get("/api/contacts?q[metadata]" + "[a]" * levels + "=1").status_code == 400
    assert api.get("/api/contacts").headers["Total"] == "0"


def test_form_brackets_32_levels_deep_are_accepted(api):
    name = "metadata" + "[a]" * 31
    assert api.post("/api/contacts", data={"msisdn": "+252662345678", name: "1"}).status_code == 201


@pytest.mark.parametrize("value", [["created_at"], {"a": "created_at"}])
def test_max_per_period_timestamp_attribute_as_a_list_or_object_is_a_422(api, value):
    response = _json(api, "post", "/api/batch_operations", {
        "type": "BatchOperation::PhoneCallQueue",
        "parameters": {"max_per_period": 10, "max_per_period_timestamp_attribute": value}})
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"max_per_period_timestamp_attribute": ["is not included in the list"]}


BATCH_PARAMETERS = ["limit", "max", "max_per_period", "max_per_period_hours", "max_per_period_timestamp_attribute",
                    "max_per_period_statuses", "skip_validate_preview_presence", "remote_request_params",
                    "callout_filter_params", "callout_participation_filter_params"]


@pytest.mark.parametrize("name", BATCH_PARAMETERS)
@pytest.mark.parametrize("value", [[["x"]], {"a": {"b": 1}}, [{"a": 1}], 1.5, True, None])
def test_every_batch_operation_parameter_of_a_wrong_type_is_a_4xx(api, name, value):
    response = _json(api, "post", "/api/batch_operations", {
        "type": "BatchOperation::PhoneCallCreate",
        "parameters": {"remote_request_params": {"from": "1234"}, name: value}})
    assert response.status_code in (201, 422), (response.status_code, response.get_data(as_text=True))


FIELDS_OF_STRINGS = [
    ("patch", "/api/account", ["twilio_account_sid", "twilio_auth_token", "somleng_account_sid",
                               "somleng_auth_token", "platform_provider_name", "somleng_api_host",
                               "somleng_api_base_url", "metadata_merge_mode"]),
    ("patch", "/api/contacts/{contact}", ["msisdn"]),
    ("patch", "/api/callouts/{callout}", ["call_flow_logic"]),
    ("patch", "/api/callout_participations/{participation}", ["msisdn", "call_flow_logic"]),
    ("patch", "/api/phone_calls/{phone_call}", ["msisdn", "call_flow_logic"]),
    ("post", "/api/batch_operations", ["type"]),
    ("post", "/api/callouts/{callout}/callout_events", ["event"]),
]


@pytest.mark.parametrize("method, path, names", FIELDS_OF_STRINGS)
@pytest.mark.parametrize("value", [["x"], {"a": "x"}])
def test_a_list_or_object_where_a_string_is_expected_is_a_422_naming_the_field(api, records, method, path, names,
                                                                              value):
    for name in names:
        response = _json(api, method, path.format(**records), {name: value})
        assert response.status_code == 422, (name, response.get_data(as_text=True))
        assert name in response.get_json()["errors"], (name, response.get_json())


@pytest.mark.parametrize("method, path, field", [
    ("patch", "/api/account", "settings"), ("patch", "/api/contacts/{contact}", "metadata"),
    ("patch", "/api/phone_calls/{phone_call}", "remote_request_params"),
    ("post", "/api/batch_operations", "parameters"),
])
@pytest.mark.parametrize("value", [["x"], "x", 1])
def test_a_document_that_is_not_an_object_is_a_422(api, records, method, path, field, value):
    body = {field: value, **({"type": "BatchOperation::PhoneCallQueue"} if path == "/api/batch_operations" else {})}
    response = _json(api, method, path.format(**records), body)
    assert response.status_code == 422 and field in response.get_json()["errors"]


# ---------------------------------------------------------------- case 6: chunked bodies

def _form_of(size: int) -> bytes:
    """A form of exactly `size` bytes whose last field would be lost if the body were cut."""
    head, tail = b"metadata[pad]=", b"&metadata[last]=1"
    return head + b"x" * (size - len(head) - len(tail)) + tail


def _post_chunked(api, path: str, body: bytes):
    """As a WSGI server that decodes chunked bodies (gunicorn, werkzeug's) hands one on: no Content-Length."""
    return api.patch(path, input_stream=io.BytesIO(body), content_type="application/x-www-form-urlencoded",
                     headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})


@pytest.mark.parametrize("send", ["chunked", "sized"])
def test_a_body_over_1_mib_is_a_413_chunked_or_sized_and_nothing_is_kept(api, records, send):
    path = f"/api/contacts/{records['contact']}"
    body = _form_of(MIB + 1)
    if send == "chunked":
        response = _post_chunked(api, path, body)
    else:
        response = api.patch(path, data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 413
    assert response.get_json() == {"status": 413, "error": "Request Entity Too Large"}
    assert api.get(path).get_json()["metadata"] == {}


@pytest.mark.parametrize("send", ["chunked", "sized"])
def test_a_body_of_exactly_1_mib_is_read_whole(api, records, send):
    path = f"/api/contacts/{records['contact']}"
    body = _form_of(MIB)
    if send == "chunked":
        response = _post_chunked(api, path, body)
    else:
        response = api.patch(path, data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 422  # read whole: the metadata is too large, not the body
    assert response.get_json()["errors"] == {"metadata": ["is too large (maximum is 65536 bytes)"]}


def test_a_small_chunked_body_is_read_whole(api, records):
    path = f"/api/contacts/{records['contact']}"
    assert _post_chunked(api, path, b"metadata[a]=1&metadata[b]=2").status_code == 204
    assert api.get(path).get_json()["metadata"] == {"a": "1", "b": "2"}


def test_a_chunked_body_a_server_cannot_end_is_refused_not_read_as_empty(api, records):
    path = f"/api/contacts/{records['contact']}"
    response = api.patch(path, input_stream=io.BytesIO(b"metadata[a]=1"),
                         content_type="application/x-www-form-urlencoded", headers={"Transfer-Encoding": "chunked"})
    assert response.status_code == 411
