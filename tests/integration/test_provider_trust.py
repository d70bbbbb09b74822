"""Issue 9, cases 1, 2, 4, 8 and 10's rate ceiling: provider endpoints are the operator's choice, provider SIDs
name one account, the dialer survives any answer, and the operator caps what a tenant may ask for."""
import json
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from scfm.entrypoints import jobs
from scfm.services import sweeper
from tests.integration.conftest import PROVIDER_SID, PROVIDER_TOKEN, dial, new_account_api, signed_webhook
from tests.integration.test_phone_calls_api import DEMO
from tests.support.fake_provider import BAD_ANSWERS, SECRET, FakeProvider

MAX_CALLS_PER_SECOND, MAX_CALLS_IN_FLIGHT = "SCFM_MAX_CALLS_PER_SECOND", "SCFM_MAX_CALLS_IN_FLIGHT"

MSISDN = "+252662345678"


def _queued_call(api, msisdn: str = MSISDN) -> dict:
    contact = api.post("/api/contacts", data={"msisdn": msisdn}).get_json()
    callout = api.post("/api/callouts").get_json()
    participation = api.post(f"/api/callouts/{callout['id']}/callout_participations",
                             data={"contact_id": contact["id"]}).get_json()
    call = api.post(f"/api/callout_participations/{participation['id']}/phone_calls", data=DEMO).get_json()
    assert api.post(f"/api/phone_calls/{call['id']}/phone_call_events", data={"event": "queue"}).status_code == 201
    return call


def _fetched(api, call) -> dict:
    return api.get(f"/api/phone_calls/{call['id']}").get_json()


def _claim(deps, call) -> tuple:
    with deps.engine.connect() as conn:
        return conn.execute(text("SELECT dial_claimed_at, remote_call_id FROM phone_calls WHERE id = :id"),
                            {"id": call["id"]}).one()


# ---------------------------------------------------------------- 1, 2: provider endpoints


@pytest.fixture
def server_defaults(deps, provider, monkeypatch):
    """The operator's own Somleng account, at the fake provider: what tenants without credentials dial with."""
    for key, value in {"PLATFORM_PROVIDER": "somleng", "SOMLENG_ACCOUNT_SID": PROVIDER_SID,
                       "SOMLENG_AUTH_TOKEN": PROVIDER_TOKEN, "SOMLENG_CLIENT_REST_API_BASE_URL": provider.url}.items():
        monkeypatch.setitem(deps.settings.provider, key, value)


@pytest.fixture
def elsewhere():
    """A server the operator never listed, with the server's credentials valid there: what a tenant would aim at."""
    with FakeProvider({PROVIDER_SID: PROVIDER_TOKEN}) as server:
        yield server


@pytest.mark.parametrize("field,value", [
    ("somleng_api_base_url", "http://127.0.0.1:9999/x"), ("somleng_api_base_url", "file:///etc/passwd"),
    ("somleng_api_base_url", "gopher://127.0.0.1:6379/_FLUSHALL"),
    ("somleng_api_base_url", "http://169.254.169.254/latest/meta-data"),
    ("somleng_api_base_url", "https://user:secret@api.somleng.org"), ("somleng_api_host", "127.0.0.1:6379"),
    ("somleng_api_host", "localhost"), ("somleng_api_base_url", "https://localtest.me"),  # a name for 127.0.0.1
    ("somleng_api_base_url", "https://api.somleng.org.127.0.0.1.nip.io"),
])
def test_a_provider_url_the_operator_did_not_allow_is_refused_naming_the_field(api, server_defaults, field, value):
    response = api.patch("/api/account", data={"platform_provider_name": "somleng", field: value})
    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == [field]
    assert api.get("/api/account").get_json()[field] is None


def test_the_servers_credentials_go_to_the_servers_provider_and_nowhere_else(
        app, admin, api, server_defaults, provider, elsewhere, deps, run_jobs, monkeypatch):
    assert api.patch("/api/account", data={"somleng_api_base_url": elsewhere.url}).status_code == 422
    # the operator allows it for accounts with their own credentials; this one has none
    monkeypatch.setitem(deps.settings.provider, "SCFM_ALLOWED_PROVIDER_URLS",
                        deps.settings.provider.get("SCFM_ALLOWED_PROVIDER_URLS", frozenset()) | {elsewhere.url})
    assert api.patch("/api/account", data={"somleng_api_base_url": elsewhere.url}).status_code == 204
    call = _queued_call(api)
    run_jobs()
    fetched = _fetched(api, call)
    assert fetched["status"] == "errored"
    assert "server's provider credentials are sent nowhere else" in fetched["remote_error_message"]
    assert elsewhere.created_calls == [] and elsewhere.bad_answered == []
    # without a URL of its own, the account dials the server's provider
    assert api.patch("/api/account", data={"somleng_api_base_url": ""}).status_code == 204
    second = _queued_call(api, "+252662345679")
    run_jobs()
    assert _fetched(api, second)["status"] == "remotely_queued"
    assert [created["account_sid"] for created in provider.created_calls] == [PROVIDER_SID]


def test_an_account_whose_url_is_no_longer_allowed_does_not_dial_it(calling_api, provider, deps, run_jobs,
                                                                     monkeypatch):
    monkeypatch.setitem(deps.settings.provider, "SCFM_ALLOWED_PROVIDER_URLS", frozenset())  # the operator's change
    call = _queued_call(calling_api)
    run_jobs()
    fetched = _fetched(calling_api, call)
    assert fetched["status"] == "errored"
    assert "somleng_api_base_url is not among the provider URLs this server allows" in fetched["remote_error_message"]
    assert provider.created_calls == []


def test_a_url_from_before_the_allow_list_is_not_dialed_with_the_servers_credentials(
        api, server_defaults, elsewhere, deps, run_jobs):
    with deps.engine.begin() as conn:  # as an account set it before this version
        conn.execute(text("UPDATE accounts SET platform_provider_name = 'somleng', somleng_api_base_url = :url"),
                     {"url": elsewhere.url + "/x"})
    call = _queued_call(api)
    run_jobs()
    assert _fetched(api, call)["status"] == "errored"
    assert elsewhere.created_calls == [] and elsewhere.bad_answered == []


def test_a_redirect_is_not_followed(calling_api, provider, run_jobs):
    provider.bad_answer = "redirect"
    call = _queued_call(calling_api)
    run_jobs()
    fetched = _fetched(calling_api, call)
    assert fetched["status"] == "errored" and fetched["remote_error_message"].startswith("Unable to create record")
    assert provider.redirected == []


def test_a_fetch_answered_with_arbitrary_json_is_an_error_not_a_stored_answer(calling_api, provider, run_jobs):
    call = _queued_call(calling_api)
    run_jobs()
    provider.bad_answer = "json_2xx"
    path = f"/api/phone_calls/{call['id']}"
    assert calling_api.post(f"{path}/phone_call_events", data={"event": "queue_remote_fetch"}).status_code == 201
    run_jobs()
    fetched = _fetched(calling_api, call)
    assert fetched["status"] == "remotely_queued" and fetched["remote_response"] == {}
    assert fetched["remote_error_message"] == (
        "The provider's answer is not a call resource (HTTP 200, application/json, "
        f"{len(BAD_ANSWERS['json_2xx'][2])} characters)")
    assert SECRET not in json.dumps(fetched)


# ---------------------------------------------------------------- 4: provider SIDs name one account


def test_a_provider_sid_names_one_account_whichever_column(app, admin, deps):
    first = new_account_api(app, admin, somleng_account_sid="SID-B")
    second = new_account_api(app, admin)
    taken = second.patch("/api/account", data={"twilio_account_sid": "SID-B"})
    assert taken.status_code == 422 and taken.get_json() == {"errors": {"twilio_account_sid": ["has already been taken"]}}
    assert admin.post("/api/accounts", data={"twilio_account_sid": "SID-B"}).get_json() == {
        "errors": {"twilio_account_sid": ["has already been taken"]}}
    assert second.patch("/api/account", data={"twilio_account_sid": "SID-C"}).status_code == 204
    taken = first.patch("/api/account", data={"somleng_account_sid": "SID-C"})
    assert taken.get_json() == {"errors": {"somleng_account_sid": ["has already been taken"]}}
    # one account may name its SID in both columns, and a SID let go of is free again
    assert first.patch("/api/account", data={"twilio_account_sid": "SID-B"}).status_code == 204
    assert first.patch("/api/account", data={"twilio_account_sid": "", "somleng_account_sid": "SID-D"}).status_code == 204
    assert second.patch("/api/account", data={"somleng_account_sid": "SID-B"}).status_code == 204
    with pytest.raises(IntegrityError), deps.engine.begin() as conn:  # the database's rule, not only the API's
        conn.execute(text("UPDATE accounts SET twilio_account_sid = 'SID-D' WHERE somleng_account_sid = 'SID-B'"))


def test_two_accounts_claiming_one_sid_at_once_one_wins(app, admin):
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    first, second = new_account_api(app, admin), new_account_api(app, admin)
    for round_ in range(10):
        barrier = Barrier(2)

        def claim(api, field):
            barrier.wait()
            return api.patch("/api/account", data={field: f"SID-RACE-{round_}"}).status_code

        with ThreadPoolExecutor(2) as pool:
            results = sorted(pool.map(claim, (first, second), ("twilio_account_sid", "somleng_account_sid")))
        assert results == [204, 422], results


def test_a_tenant_cannot_claim_the_servers_provider_sid(api, admin, server_defaults):
    taken = api.patch("/api/account", data={"somleng_account_sid": PROVIDER_SID})
    assert taken.status_code == 422 and taken.get_json() == {"errors": {"somleng_account_sid": ["has already been taken"]}}
    assert api.patch("/api/account", data={"twilio_account_sid": PROVIDER_SID}).status_code == 422
    # the operator may give it to the account its webhooks belong to
    assert admin.post("/api/accounts", data={"somleng_account_sid": PROVIDER_SID}).status_code == 201


def test_a_webhook_naming_a_sid_two_accounts_hold_is_refused(calling_api, app, admin, deps, run_jobs):
    call = _queued_call(calling_api)
    run_jobs()
    sid = _fetched(calling_api, call)["remote_call_id"]
    params = {"CallSid": sid, "AccountSid": PROVIDER_SID, "CallStatus": "ringing", "Direction": "outbound-api"}
    other = new_account_api(app, admin)
    other_id = other.get("/api/account").get_json()["id"]
    with deps.engine.begin() as conn:  # a clash from before the constraint (triggers off, as a restore would)
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("UPDATE accounts SET twilio_account_sid = :sid WHERE id = :id"),
                     {"sid": PROVIDER_SID, "id": other_id})
    assert signed_webhook(calling_api.client, params).status_code == 403
    with deps.engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("UPDATE accounts SET twilio_account_sid = NULL WHERE id = :id"), {"id": other_id})
    assert signed_webhook(calling_api.client, params).status_code == 201


# ---------------------------------------------------------------- 8: the dialer survives any answer

UNKNOWN = ["html_2xx", "text_2xx", "empty_2xx", "json_2xx", "array_2xx", "bad_sid_2xx", "problem_5xx"]
REFUSED = {
    "html_4xx": "Unable to create record",
    "problem_4xx": "Invalid 'To' Phone Number: The number is not valid",
    "long_message_4xx": "Unable to create record: xxxx",
    "redirect": "Unable to create record",
}


@pytest.mark.parametrize("kind", UNKNOWN)
def test_a_create_answered_with_no_call_resource_is_left_to_reconciliation(
        calling_api, provider, deps, run_jobs, short_grace, kind):
    provider.bad_answer_on = {"create"}
    provider.bad_answer = kind
    call = _queued_call(calling_api)
    assert dial(deps) == {"Unknown": 1}  # the dialing thread lived to report it
    fetched = _fetched(calling_api, call)
    assert fetched["status"] == "queued" and fetched["remote_queue_response"] == {}
    assert fetched["remote_call_id"] is None and SECRET not in json.dumps(fetched)
    assert _claim(deps, call)[0] is not None  # claimed: not dialed again blindly
    assert dial(deps) == {}
    # the reconciliation finds no call to the number, and dials again
    provider.bad_answer = None
    time.sleep(short_grace)
    assert sweeper.sweep(deps.uow, deps.jobs, deps.settings.timings)["unknown_outcomes"] == 1
    run_jobs()
    sweeper.sweep(deps.uow, deps.jobs, deps.settings.timings)
    run_jobs()
    assert _fetched(calling_api, call)["status"] == "remotely_queued"
    assert len(provider.bad_answered) == 1 and len(provider.calls()) == 1


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_a_create_refused_in_any_form_errors_the_call_with_a_bounded_message(calling_api, provider, deps, kind):
    provider.bad_answer = kind
    call = _queued_call(calling_api)
    assert dial(deps) == {"Refused": 1}
    fetched = _fetched(calling_api, call)
    assert fetched["status"] == "errored" and fetched["remote_error_message"].startswith(REFUSED[kind])
    assert len(fetched["remote_error_message"]) <= 500 and SECRET not in json.dumps(fetched)
    assert provider.redirected == []


def test_a_create_answered_with_a_sid_another_call_holds_errors_the_call(calling_api, provider, run_jobs, deps):
    first = _queued_call(calling_api)
    run_jobs()
    provider.bad_answer = "repeat_sid"
    second = _queued_call(calling_api, "+252662345679")
    assert dial(deps) == {"Refused": 1}
    fetched = _fetched(calling_api, second)
    assert fetched["status"] == "errored" and fetched["remote_call_id"] is None
    assert fetched["remote_error_message"] == "The provider answered with the sid of a call that another phone call already holds"
    assert _fetched(calling_api, first)["status"] == "remotely_queued"


@pytest.mark.parametrize("kind", sorted(set(BAD_ANSWERS) - {"problem_5xx"}))
def test_a_fetch_answered_with_anything_but_a_call_records_a_bounded_error(calling_api, provider, run_jobs, kind):
    call = _queued_call(calling_api)
    run_jobs()
    provider.bad_answer_on = {"fetch"}
    provider.bad_answer = kind
    path = f"/api/phone_calls/{call['id']}"
    assert calling_api.post(f"{path}/phone_call_events", data={"event": "queue_remote_fetch"}).status_code == 201
    assert jobs.fetch_remote_call(call["id"]) == "refused"
    fetched = _fetched(calling_api, call)
    assert fetched["status"] == "remotely_queued" and fetched["remote_response"] == {}
    assert 0 < len(fetched["remote_error_message"]) <= 500 and SECRET not in json.dumps(fetched)


@pytest.mark.parametrize("kind", sorted(BAD_ANSWERS))
def test_a_list_of_calls_answered_with_anything_but_calls_settles_or_asks_again(
        calling_api, provider, deps, run_jobs, short_grace, kind):
    provider.fail_after_create = True  # the call is made, the answer lost: the outcome is unknown
    call = _queued_call(calling_api)
    run_jobs()
    provider.fail_after_create = False
    provider.bad_answer_on = {"list"}
    provider.bad_answer = kind
    time.sleep(short_grace)
    result = jobs.reconcile_unknown_outcome(call["id"])
    fetched = _fetched(calling_api, call)
    if result == "ask again":
        assert fetched["status"] == "queued" and _claim(deps, call)[1] is None
    else:
        assert result == "error" and fetched["status"] == "errored"
        assert fetched["remote_error_message"].startswith("The outcome of the request to the provider is unknown")
        assert len(fetched["remote_error_message"]) <= 800
    assert SECRET not in json.dumps(fetched)
    assert len(provider.calls()) == 1  # never dialed again on an answer it could not read


# ---------------------------------------------------------------- 10: the operator's ceilings


def test_a_rate_or_calls_in_flight_above_the_servers_ceiling_is_refused(api, admin, deps, monkeypatch):
    assert api.patch("/api/account", data={"calls_per_second": 10000}).get_json() == {
        "errors": {"calls_per_second": ["must be less than or equal to 100"]}}  # the default ceiling
    monkeypatch.setitem(deps.settings.provider, MAX_CALLS_PER_SECOND, 5.0)
    monkeypatch.setitem(deps.settings.provider, MAX_CALLS_IN_FLIGHT, 20)
    assert api.patch("/api/account", data={"calls_per_second": 5.5}).status_code == 422
    response = api.patch("/api/account", data={"max_calls_in_flight": 21})
    assert response.get_json() == {"errors": {"max_calls_in_flight": ["must be less than or equal to 20"]}}
    assert admin.post("/api/accounts", data={"calls_per_second": 6}).status_code == 422  # super admins too
    assert api.patch("/api/account", data={"calls_per_second": 5, "max_calls_in_flight": 20}).status_code == 204
    account = api.get("/api/account").get_json()
    assert (account["calls_per_second"], account["max_calls_in_flight"]) == (5, 20)
