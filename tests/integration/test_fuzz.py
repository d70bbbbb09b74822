"""Schemathesis over our OpenAPI document with a seeded account: no 5xx, and every response as documented.

Every operation of /api/openapi.json is fuzzed (positive and negative data, a bounded and derandomized number
of examples), each case twice: once with the generated path ids, once with the ids of seeded records so the
handlers get past their 404s. The provider webhook authenticates by signature, not by token: it is left out of
the generic run and tested on its own below (unsigned, replayed with altered parameters, malformed).

Inputs the fuzzer once turned into 500s (NUL characters, lone surrogates, NaN, values beyond the database's
integers, far-off timestamps) are kept below as one minimal request each, answered with a 4xx.
"""
from __future__ import annotations

import base64
import json
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlalchemy import text
from twilio.request_validator import RequestValidator

from tests.integration.conftest import PROVIDER_SID, PROVIDER_TOKEN, PUBLIC_URL, new_account_api, signed_webhook
from tests.integration.test_phone_calls_api import DEMO

WEBHOOK = "/api/remote_phone_call_events"
CHECKS = [not_a_server_error, response_schema_conformance]
MAX_EXAMPLES = int(os.environ.get("SCFM_FUZZ_EXAMPLES", "25"))  # per operation and generation mode
INT32_MAX, INT64_MAX = 2**31 - 1, 2**63 - 1
MAX_PER_PAGE = 100  # scfm.services.common.MAX_PER_PAGE caps per_page; only used to predict the OFFSET overflow

INBOUND = {"CallSid": "CA" + "5" * 32, "AccountSid": PROVIDER_SID, "From": "+85510202103", "To": "1294",
           "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01"}


def _basic(token: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{token}:".encode()).decode()}


def _created(response) -> int:
    assert response.status_code == 201, (response.status_code, response.get_data(as_text=True))
    return response.get_json()["id"]


def _event_count(deps) -> int:
    with deps.engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM remote_phone_call_events")).scalar()


@pytest.fixture
def seeded(app, admin):
    """An account with a token and one of everything, plus spare records for the DELETE operations."""
    api = new_account_api(app, admin, somleng_account_sid=PROVIDER_SID, somleng_auth_token=PROVIDER_TOKEN)
    account = api.get("/api/account").get_json()["id"]
    spare_account = _created(admin.post("/api/accounts"))
    spare_token = _created(api.post("/api/access_tokens"))  # never the token the run authenticates with
    contact = _created(api.post("/api/contacts", data={"msisdn": "+252662345678", "metadata[name]": "Alice"}))
    spare_contact = _created(api.post("/api/contacts", data={"msisdn": "+252662345679"}))
    other_contact = _created(api.post("/api/contacts", data={"msisdn": "+252662345670"}))
    callout = _created(api.post("/api/callouts", data={"metadata[name]": "Flood"}))
    spare_callout = _created(api.post("/api/callouts"))
    participations = f"/api/callouts/{callout}/callout_participations"
    participation = _created(api.post(participations, data={"contact_id": contact}))
    spare_participation = _created(api.post(participations, data={"contact_id": other_contact}))
    phone_calls = f"/api/callout_participations/{participation}/phone_calls"
    phone_call = _created(api.post(phone_calls, data=DEMO))
    spare_phone_call = _created(api.post(phone_calls, data=DEMO))
    population = _created(api.post(f"/api/callouts/{callout}/batch_operations",
                                   data={"type": "BatchOperation::CalloutPopulation"}))
    spare_operation = _created(api.post(f"/api/callouts/{callout}/batch_operations",
                                        data={"type": "BatchOperation::CalloutPopulation"}))
    create = _created(api.post("/api/batch_operations", data={
        "type": "BatchOperation::PhoneCallCreate",
        **{key.replace("remote_request_params", "parameters[remote_request_params]"): value
           for key, value in DEMO.items()}}))
    queue = _created(api.post("/api/batch_operations", data={"type": "BatchOperation::PhoneCallQueue"}))
    fetch = _created(api.post("/api/batch_operations", data={"type": "BatchOperation::PhoneCallQueueRemoteFetch",
                                                             "parameters[skip_validate_preview_presence]": "true"}))
    contact_import = _created(api.post("/api/contact_imports", data=b"msisdn,name\n+252662345678,Alice\nbad,x\n",
                                       content_type="text/csv"))
    assert signed_webhook(api.client, INBOUND).status_code == 201
    [event] = api.get(WEBHOOK).get_json()
    return {
        "user": _basic(api.token), "admin": _basic(admin.token),
        # path parameter -> ids a case may act on (taken in turn), and the one a DELETE may remove
        "ids": {
            "account_id": [account], "token_id": [spare_token], "contact_id": [contact], "callout_id": [callout],
            "participation_id": [participation], "phone_call_id": [phone_call], "event_id": [event["id"]],
            "operation_id": [population, create, queue, fetch],  # each type has its own previews and results
            "contact_import_id": [contact_import],
        },
        "spare": {
            "account_id": spare_account, "token_id": spare_token, "contact_id": spare_contact,
            "callout_id": spare_callout, "participation_id": spare_participation, "phone_call_id": spare_phone_call,
            "event_id": event["id"], "operation_id": spare_operation, "contact_import_id": contact_import,
        },
    }


def _document(app) -> dict:
    response = app.test_client().get("/api/openapi.json")
    assert response.status_code == 200
    return response.get_json()


# ---------------------------------------------------------------- the generic run

def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def _fuzz(app, operation, mode: GenerationMode, seeded: dict) -> None:
    headers = seeded["admin"] if operation.path.startswith("/api/accounts") else seeded["user"]
    turn = iter(range(10**9))

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=False,
              suppress_health_check=list(HealthCheck))
    def run(case):
        case.call_and_validate(app=app, headers=headers, checks=CHECKS)
        if case.path_parameters:
            n = next(turn)
            case.path_parameters = {
                name: str(seeded["spare"][name] if case.method.upper() == "DELETE"
                          else seeded["ids"][name][n % len(seeded["ids"][name])])
                for name in case.path_parameters
            }
            case.call_and_validate(app=app, headers=headers, checks=CHECKS)

    run()


# Operations left out of the generic run, with the reason.
EXCLUDED = {
    ("POST", WEBHOOK): "authenticates by signature, not by token: see the webhook tests below",
}


def test_every_operation_answers_without_5xx_and_as_documented(app, seeded):
    schema = schemathesis.openapi.from_dict(_document(app))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 50  # the whole API, not a subset that failed to load
    failures, ran = [], 0
    for operation in operations:
        if (operation.method.upper(), operation.path) in EXCLUDED:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(app, operation, mode, seeded)
                ran += 1
            except (Exception, BaseExceptionGroup) as error:  # schemathesis' FailureGroup is a BaseExceptionGroup
                failures.append(f"{mode.value} {operation.label}:\n{error}")
    assert not failures, f"{len(failures)} failing operation(s):\n\n" + "\n\n".join(failures)
    assert ran == 2 * (len(operations) - len(EXCLUDED))


def test_the_fuzzed_records_still_make_sense(app, seeded):
    """The seeded ids really are the account's: the generic run is not 404s all the way down."""
    client = app.test_client()
    for name, path in [("contact_id", "/api/contacts/{}"), ("callout_id", "/api/callouts/{}"),
                       ("participation_id", "/api/callout_participations/{}"), ("phone_call_id", "/api/phone_calls/{}"),
                       ("event_id", "/api/remote_phone_call_events/{}"), ("operation_id", "/api/batch_operations/{}")]:
        for record in seeded["ids"][name]:
            assert client.get(path.format(record), headers=seeded["user"]).status_code == 200, (name, record)
    assert client.get(f"/api/accounts/{seeded['spare']['account_id']}", headers=seeded["admin"]).status_code == 200


def test_the_served_error_schema_describes_error_bodies(app, seeded):
    schema = schemathesis.openapi.from_dict(_document(app))
    operation = schema["/api/contacts/{contact_id}"]["GET"]
    case = operation.Case(path_parameters={"contact_id": "0"})
    response = case.call(app=app, headers=seeded["user"])
    assert response.status_code == 404
    case.validate_response(response, checks=[response_schema_conformance])


# ---------------------------------------------------------------- inputs that were 5xx, one minimal request each

JSON_BODY = {"Content-Type": "application/json"}
FORMER_SERVER_ERRORS = [
    pytest.param("POST", "/api/contacts", '{"msisdn": "+252662345671", "metadata": {"a": "\\u0000"}}', id="nul-in-metadata"),
    pytest.param("PATCH", "/api/account", '{"settings": {"\\u0000": 1}}', id="nul-in-settings-key"),
    pytest.param("PATCH", "/api/account", '{"somleng_account_sid": "a\\u0000b"}', id="nul-in-text-column"),
    pytest.param("GET", "/api/phone_calls?q[remote_call_id]=%00", None, id="nul-in-text-filter"),
    pytest.param("GET", "/api/contacts?q[metadata][a]=%00", None, id="nul-in-json-filter"),
    pytest.param("PATCH", "/api/contacts/{contact_id}", '{"metadata": {"a": "\\ud800"}}', id="surrogate-in-metadata"),
    pytest.param("PATCH", "/api/account", '{"somleng_account_sid": "\\ud800"}',
                 id="surrogate-in-text-column"),
    pytest.param("PATCH", "/api/contacts/{contact_id}", '{"metadata": {"a": NaN}}', id="nan-in-metadata"),
    pytest.param("GET", "/api/contacts?q[metadata][a]=NaN", None,
                 id="nan-in-json-filter"),
    pytest.param("GET", "/api/contacts?page=100000000000000000000", None, id="huge-page"),
    pytest.param("PATCH", "/api/account", '{"max_calls_in_flight": 2147483648}', id="huge-max-calls-in-flight"),
    pytest.param("GET", "/api/contacts?q[created_at_after]=2020-01-01T00:00:00%2B16:00", None, id="timestamp-offset"),
    pytest.param("GET", "/api/contacts?q[created_at_before]=9999-12-31", None, id="date-overflow"),
    pytest.param("POST", "/api/batch_operations",
                 '{"type": "BatchOperation::PhoneCallQueue", "parameters": {"limit": "9223372036854775808"}}', id="huge-batch-limit"),
    pytest.param("POST", "/api/batch_operations",
                 '{"type": "BatchOperation::PhoneCallQueue", "parameters": {"max": "1", '
                 '"max_per_period_hours": "nan"}}', id="nan-period-hours"),
]


@pytest.mark.parametrize(("method", "path", "body"), FORMER_SERVER_ERRORS)
def test_values_that_were_server_errors_are_answered_or_refused_clearly(app, seeded, method, path, body):
    """Unstorable values are a 400/422 naming the problem; a NaN filter or a +16:00 offset simply works."""
    path = path.format(contact_id=seeded["ids"]["contact_id"][0])
    headers = {**seeded["user"], **(JSON_BODY if body else {})}
    response = app.test_client().open(path, method=method, headers=headers, data=body)
    assert response.status_code in (200, 400, 422), response.get_data(as_text=True)
    if response.status_code != 200:
        assert "errors" in response.get_json()


# ---------------------------------------------------------------- the webhook

@pytest.fixture
def provider_account(app, admin):
    return new_account_api(app, admin, somleng_account_sid=PROVIDER_SID, somleng_auth_token=PROVIDER_TOKEN)


def _signature(params: dict, query: str = "", token: str = PROVIDER_TOKEN) -> str:
    url = PUBLIC_URL + WEBHOOK + (f"?{query}" if query else "")
    return RequestValidator(token).compute_signature(url, params)


def _post(client, params=None, signature=None, query="", **kwargs):
    headers = kwargs.pop("headers", {})
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    path = WEBHOOK + (f"?{query}" if query else "")
    return client.post(path, data=kwargs.pop("data", params), headers=headers, **kwargs)


def test_a_signed_webhook_is_accepted(provider_account, deps):
    """The control for the rejections below: the same request, correctly signed, records one event."""
    response = _post(provider_account.client, INBOUND, _signature(INBOUND))
    assert response.status_code == 201 and response.mimetype == "application/xml"
    assert _event_count(deps) == 1


def test_the_webhook_rejects_unsigned_and_altered_requests(provider_account, deps):
    client = provider_account.client
    signature = _signature(INBOUND)
    rejected = {
        "unsigned": _post(client, INBOUND),
        "empty signature": _post(client, INBOUND, ""),
        "forged signature": _post(client, INBOUND, "forged"),
        "signed with another token": _post(client, INBOUND, _signature(INBOUND, token="another-token")),
        "replayed with an altered parameter": _post(client, {**INBOUND, "CallStatus": "completed"}, signature),
        "replayed with an added parameter": _post(client, {**INBOUND, "Digits": "1"}, signature),
        "replayed without a parameter": _post(client, {k: v for k, v in INBOUND.items() if k != "From"}, signature),
        "replayed with an altered query": _post(client, INBOUND, signature, query="phone_call_id=1"),
        "replayed with another account": _post(client, {**INBOUND, "AccountSid": "AC" + "9" * 32}, signature),
        "signed for an unknown account": _post(client, {**INBOUND, "AccountSid": "AC" + "9" * 32},
                                               _signature({**INBOUND, "AccountSid": "AC" + "9" * 32})),
    }
    statuses = {name: response.status_code for name, response in rejected.items()}
    assert statuses == {name: 403 for name in rejected}
    assert _event_count(deps) == 0
    assert provider_account.get("/api/phone_calls").headers["Total"] == "0"


def test_the_webhook_rejects_malformed_requests_without_5xx(provider_account, deps):
    client = provider_account.client
    signature = _signature(INBOUND)
    missing_sid = {k: v for k, v in INBOUND.items() if k != "AccountSid"}
    huge = {**INBOUND, "Padding": "x" * (deps.settings.max_body_bytes + 1)}
    rejected = {
        "garbage bytes": _post(client, None, signature, data=bytes(range(256)) * 64,
                               content_type="application/octet-stream"),
        "garbage form": _post(client, None, signature, data=b"%%%\xff\xfe&&==&=x&AccountSid",
                              content_type="application/x-www-form-urlencoded"),
        "JSON body": _post(client, None, signature, data=json.dumps(INBOUND), content_type="application/json"),
        "missing AccountSid": _post(client, missing_sid, _signature(missing_sid)),
        "empty form": _post(client, {}, _signature({})),
        "huge body": _post(client, huge, _signature(huge)),
        "GET with the parameters": client.get(WEBHOOK, query_string=INBOUND,
                                              headers={"X-Twilio-Signature": signature}),
        "PUT": client.put(WEBHOOK, data=INBOUND, headers={"X-Twilio-Signature": signature}),
    }
    statuses = {name: response.status_code for name, response in rejected.items()}
    assert all(400 <= status < 500 for status in statuses.values()), statuses
    assert statuses["huge body"] == 413
    assert statuses["missing AccountSid"] == statuses["JSON body"] == statuses["garbage bytes"] == 403
    assert statuses["GET with the parameters"] == 401  # the events list: a token, not a signature
    assert _event_count(deps) == 0


def test_the_webhook_rejects_a_nul_account_sid(provider_account, deps):
    response = _post(provider_account.client, {**INBOUND, "AccountSid": "AC\x00"})
    assert response.status_code == 400
    assert _event_count(deps) == 0
