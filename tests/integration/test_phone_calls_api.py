"""Phone calls: create, update, delete, queue to the provider through a real worker, and fetch."""
import time

import pytest
from sqlalchemy import text

from scfm.services import dialing, sweeper
from tests.integration.conftest import PROVIDER_SID, Api, dial, new_account_api, signed_webhook

DEMO = {"remote_request_params[from]": "1234", "remote_request_params[url]": "https://demo.twilio.com/docs/voice.xml",
        "remote_request_params[method]": "GET"}


@pytest.fixture
def participation(calling_api):
    contact = calling_api.post("/api/contacts", data={"msisdn": "+252662345678"}).get_json()
    callout = calling_api.post("/api/callouts").get_json()
    return calling_api.post(f"/api/callouts/{callout['id']}/callout_participations",
                            data={"contact_id": contact["id"]}).get_json()


def _create(api, participation, data=DEMO):
    return api.post(f"/api/callout_participations/{participation['id']}/phone_calls", data=data)


def test_creating_a_phone_call_needs_valid_remote_request_params(calling_api, participation):
    blank = _create(calling_api, participation, data={})
    assert blank.status_code == 422
    assert blank.get_json() == {"errors": {"remote_request_params": ["can't be blank"]}}
    unknown = _create(calling_api, participation, data={"remote_request_params[frm]": "1234"})
    assert unknown.get_json() == {"errors": {"remote_request_params": ["is not included in the list"]}}
    created = _create(calling_api, participation)
    assert created.status_code == 201
    call = created.get_json()
    assert call["status"] == "created" and call["msisdn"] == "+252662345678"
    assert call["remote_request_params"] == {"from": "1234", "url": "https://demo.twilio.com/docs/voice.xml",
                                             "method": "GET"}
    assert call["remote_response"] == {} and call["remote_queue_response"] == {} and call["remotely_queued_at"] is None
    assert call["contact_id"] == participation["contact_id"]
    assert call["callout_participation_id"] == participation["id"]


def test_queueing_dials_once_and_records_what_the_provider_answered(calling_api, participation, provider, run_jobs,
                                                                  deps):
    call = _create(calling_api, participation).get_json()
    queued = calling_api.post(f"/api/phone_calls/{call['id']}/phone_call_events", data={"event": "queue"})
    assert queued.status_code == 201 and queued.get_json()["status"] == "queued"
    run_jobs()
    fetched = calling_api.get(f"/api/phone_calls/{call['id']}").get_json()
    assert fetched["status"] == "remotely_queued"
    assert fetched["remote_call_id"].startswith("CA") and fetched["remote_status"] == "queued"
    assert fetched["remote_direction"] == "outbound-api" and fetched["remotely_queued_at"]
    assert fetched["remote_queue_response"]["sid"] == fetched["remote_call_id"]
    [request] = provider.created_calls
    assert request["params"]["To"] == "+252662345678" and request["params"]["From"] == "1234"
    assert request["params"]["Url"] == "https://demo.twilio.com/docs/voice.xml" and request["params"]["Method"] == "GET"
    assert request["params"]["StatusCallback"] == f"http://scfm.test/api/remote_phone_call_events?phone_call_id={call['id']}"
    # a second dispatcher, or a second queue event, dials nothing
    assert dial(deps) == {}
    again = calling_api.post(f"/api/phone_calls/{call['id']}/phone_call_events", data={"event": "queue"})
    assert again.status_code == 422
    assert len(provider.created_calls) == 1
    # only a created call can be deleted or change what is dialed
    assert calling_api.delete(f"/api/phone_calls/{call['id']}").get_json() == {
        "errors": {"base": ["Cannot delete record because status is remotely_queued"]}}
    assert calling_api.patch(f"/api/phone_calls/{call['id']}", data={"msisdn": "+252662345679"}).status_code == 422
    assert calling_api.patch(f"/api/phone_calls/{call['id']}", data={"metadata[a]": "b"}).status_code == 204


def test_a_refusal_by_the_provider_errors_the_call_with_its_message(calling_api, participation, provider, run_jobs):
    provider.refused_numbers = {"+252662345678"}
    call = _create(calling_api, participation).get_json()
    calling_api.post(f"/api/phone_calls/{call['id']}/phone_call_events", data={"event": "queue"})
    run_jobs()
    fetched = calling_api.get(f"/api/phone_calls/{call['id']}").get_json()
    assert fetched["status"] == "errored"
    assert fetched["remote_error_message"].startswith("Unable to create record: ")
    assert fetched["remotely_queued_at"] is not None
    assert calling_api.get("/api/phone_calls?q[remote_error_message]=nothing").headers["Total"] == "0"
    assert calling_api.get("/api/phone_calls?q[status]=errored").headers["Total"] == "1"


def test_an_account_without_credentials_errors_with_a_clear_message(app, admin, run_jobs):

    api = new_account_api(app, admin)
    contact = api.post("/api/contacts", data={"msisdn": "+252662345678"}).get_json()
    callout = api.post("/api/callouts").get_json()
    participation = api.post(f"/api/callouts/{callout['id']}/callout_participations",
                             data={"contact_id": contact["id"]}).get_json()
    call = _create(api, participation).get_json()
    api.post(f"/api/phone_calls/{call['id']}/phone_call_events", data={"event": "queue"})
    run_jobs()
    fetched = api.get(f"/api/phone_calls/{call['id']}").get_json()
    assert fetched["status"] == "errored"
    assert "no provider credentials" in fetched["remote_error_message"]


def test_an_unreachable_provider_leaves_the_call_queued_and_the_sweeper_dials_it_later(
        calling_api, participation, provider, run_jobs, deps):
    calling_api.patch("/api/account", data={"somleng_api_base_url": "http://127.0.0.1:9"})  # nothing listens
    call = _create(calling_api, participation).get_json()
    calling_api.post(f"/api/phone_calls/{call['id']}/phone_call_events", data={"event": "queue"})
    run_jobs()
    fetched = calling_api.get(f"/api/phone_calls/{call['id']}").get_json()
    assert fetched["status"] == "queued" and fetched["remote_error_message"] is None
    calling_api.patch("/api/account", data={"somleng_api_base_url": provider.url})
    with deps.engine.begin() as conn:  # the retry is due
        conn.execute(text("UPDATE phone_calls SET next_attempt_at = now() - interval '1 second'"))
    assert dial(deps) == {"RemotelyQueued": 1}  # the dialers find the due retry in the database
    assert calling_api.get(f"/api/phone_calls/{call['id']}").get_json()["status"] == "remotely_queued"
    assert len(provider.created_calls) == 1


def test_a_timeout_is_not_a_refusal_and_is_never_redialed(calling_api, participation, provider, run_jobs, deps):
    provider.delay_seconds = 5  # longer than PROVIDER_TIMEOUT_SECONDS
    call = _create(calling_api, participation).get_json()
    calling_api.post(f"/api/phone_calls/{call['id']}/phone_call_events", data={"event": "queue"})
    run_jobs()
    fetched = calling_api.get(f"/api/phone_calls/{call['id']}").get_json()
    assert fetched["status"] == "queued" and fetched["remote_error_message"] is None
    assert dial(deps) == {}
    assert len(provider.created_calls) == 1
    # the status callback that names our call settles it
    sid = provider.calls()[0]["sid"]
    response = signed_webhook(calling_api.client, {"CallSid": sid, "AccountSid": PROVIDER_SID, "CallStatus": "ringing",
                                                   "Direction": "outbound-api"}, query=f"phone_call_id={call['id']}")
    assert response.status_code == 201
    fetched = calling_api.get(f"/api/phone_calls/{call['id']}").get_json()
    assert fetched["status"] == "in_progress" and fetched["remote_call_id"] == sid


@pytest.fixture
def unknown_outcome(calling_api, provider, run_jobs, short_grace):
    """Queue a call whose dial ends with no answer (the fault set on the provider), then let the grace for
    its status callback pass."""

    def dial(participation):
        call = _create(calling_api, participation).get_json()
        calling_api.post(f"/api/phone_calls/{call['id']}/phone_call_events", data={"event": "queue"})
        run_jobs()
        assert calling_api.get(f"/api/phone_calls/{call['id']}").get_json()["status"] == "queued"
        time.sleep(short_grace)
        return call

    return dial


def _sweep(deps, run_jobs) -> dict:
    report = sweeper.sweep(deps.uow, deps.jobs, deps.settings.timings)
    run_jobs()
    return report


def test_an_unknown_outcome_is_the_call_the_provider_lists_when_it_made_one(
        calling_api, participation, provider, run_jobs, deps, unknown_outcome):
    provider.fail_after_create = True  # the call is made, the answer is a 500
    call = unknown_outcome(participation)
    assert _sweep(deps, run_jobs)["unknown_outcomes"] == 1
    fetched = calling_api.get(f"/api/phone_calls/{call['id']}").get_json()
    made = provider.calls()
    assert len(made) == 1 and len(provider.created_calls) == 1
    assert fetched["status"] == "remotely_queued" and fetched["remote_call_id"] == made[0]["sid"]
    assert fetched["remote_status"] == "queued" and fetched["remote_queue_response"]["sid"] == made[0]["sid"]
    assert provider.lists[-1]["query"]["To"] == "+252662345678"
    assert _sweep(deps, run_jobs)["unknown_outcomes"] == 0


def test_an_unknown_outcome_is_dialed_again_when_the_provider_made_no_call(
        calling_api, participation, provider, run_jobs, deps, unknown_outcome):
    provider.fail_ratio = 1.0  # a 500 before any call is made
    call = unknown_outcome(participation)
    provider.fail_ratio = 0.0
    # the reconciliation puts the call back in the dial queue, and the dialers dial it again
    assert _sweep(deps, run_jobs)["unknown_outcomes"] == 1
    fetched = calling_api.get(f"/api/phone_calls/{call['id']}").get_json()
    assert fetched["status"] == "remotely_queued"
    with deps.engine.connect() as conn:  # the request that made no call does not count as an attempt
        assert conn.execute(text("SELECT dial_attempts FROM phone_calls WHERE id = :id"), {"id": call["id"]}).scalar() == 1
    assert [create["status_code"] for create in provider.created_calls] == [500, 201]
    assert [made["sid"] for made in provider.calls()] == [fetched["remote_call_id"]]


def test_an_unknown_outcome_the_provider_cannot_settle_ends_errored_saying_so(
        calling_api, participation, provider, run_jobs, deps, unknown_outcome):
    provider.fail_after_create = True
    # the same number dialed from another callout, with no answer either: two calls no phone call knows
    callout = calling_api.post("/api/callouts").get_json()
    other = calling_api.post(f"/api/callouts/{callout['id']}/callout_participations",
                             data={"contact_id": participation["contact_id"]}).get_json()
    first = unknown_outcome(participation)
    second = unknown_outcome(other)
    assert _sweep(deps, run_jobs)["unknown_outcomes"] == 2
    messages = []
    for call in (first, second):
        fetched = calling_api.get(f"/api/phone_calls/{call['id']}").get_json()
        assert fetched["status"] == "errored" and fetched["remote_call_id"] is None
        assert fetched["remote_error_message"].startswith("The outcome of the request to the provider is unknown")
        messages.append(fetched["remote_error_message"])
    # the first is settled while the second is open too; then the second sees two calls no phone call knows
    assert "another call to this number has an unknown outcome too" in messages[0]
    assert "the provider lists 2 calls to this number" in messages[1]
    assert len(provider.created_calls) == 2


def test_a_call_made_for_another_open_claim_to_the_number_is_not_adopted(
        calling_api, participation, provider, run_jobs, deps, unknown_outcome):
    callout = calling_api.post("/api/callouts").get_json()
    other = calling_api.post(f"/api/callouts/{callout['id']}/callout_participations",
                             data={"contact_id": participation["contact_id"]}).get_json()
    # made first (the lower id, so settled first), its request makes no call...
    provider.fail_ratio = 1.0
    no_call = unknown_outcome(other)
    # ...while this one's request makes a call whose answer is lost
    provider.fail_ratio, provider.fail_after_create = 0.0, True
    made_call = unknown_outcome(participation)
    assert no_call["id"] < made_call["id"]
    with deps.engine.begin() as conn:  # the two requests were in flight together: claimed half a second apart
        conn.execute(text("UPDATE phone_calls SET dial_claimed_at = (SELECT dial_claimed_at - interval '0.5 s' "
                          "FROM phone_calls WHERE id = :made) WHERE id = :no_call"),
                     {"made": made_call["id"], "no_call": no_call["id"]})
    _sweep(deps, run_jobs)
    made = provider.calls()
    assert len(made) == 1
    first = calling_api.get(f"/api/phone_calls/{no_call['id']}").get_json()
    assert first["status"] == "errored" and "unknown outcome too" in first["remote_error_message"]
    second = calling_api.get(f"/api/phone_calls/{made_call['id']}").get_json()
    assert second["status"] == "remotely_queued" and second["remote_call_id"] == made[0]["sid"]


def test_a_reconciliation_never_touches_a_newer_claim(calling_api, participation, provider, run_jobs, deps,
                                                      unknown_outcome):
    provider.fail_ratio = 1.0
    call = unknown_outcome(participation)
    provider.fail_ratio = 0.0
    reconcile = (deps.uow, deps.provider, deps.settings.provider, call["id"], deps.settings.timings)
    assert dialing.reconcile_unknown_outcome(*reconcile) == "dial again"
    with deps.engine.begin() as conn:  # a dispatcher claims it again and is dialing it now
        conn.execute(text("UPDATE phone_calls SET dial_claimed_at = now() WHERE id = :id"), {"id": call["id"]})
    assert dialing.reconcile_unknown_outcome(*reconcile) == "skipped"  # a second delivery of the same job
    with deps.engine.connect() as conn:
        claimed = conn.execute(text("SELECT dial_claimed_at FROM phone_calls WHERE id = :id"),
                               {"id": call["id"]}).scalar()
    assert claimed is not None


def test_an_unknown_outcome_ends_errored_when_the_provider_cannot_list_calls(
        calling_api, participation, provider, run_jobs, deps, unknown_outcome):
    provider.fail_after_create, provider.list_supported = True, False
    call = unknown_outcome(participation)
    _sweep(deps, run_jobs)
    fetched = calling_api.get(f"/api/phone_calls/{call['id']}").get_json()
    assert fetched["status"] == "errored" and "refused to list its calls" in fetched["remote_error_message"]
    assert len(provider.created_calls) == 1


def test_an_unknown_outcome_is_asked_about_again_while_the_provider_is_out_of_reach(
        calling_api, participation, provider, run_jobs, deps, unknown_outcome):
    provider.fail_after_create = True
    call = unknown_outcome(participation)
    calling_api.patch("/api/account", data={"somleng_api_base_url": "http://127.0.0.1:9"})  # nothing listens
    assert _sweep(deps, run_jobs)["unknown_outcomes"] == 1
    assert calling_api.get(f"/api/phone_calls/{call['id']}").get_json()["status"] == "queued"
    assert _sweep(deps, run_jobs)["unknown_outcomes"] == 0  # not before the reconcile interval
    calling_api.patch("/api/account", data={"somleng_api_base_url": provider.url})
    with deps.engine.begin() as conn:
        conn.execute(text("UPDATE phone_calls SET reconcile_after = now() - interval '1 second'"))
    assert _sweep(deps, run_jobs)["unknown_outcomes"] == 1
    fetched = calling_api.get(f"/api/phone_calls/{call['id']}").get_json()
    assert fetched["status"] == "remotely_queued" and fetched["remote_call_id"] == provider.calls()[0]["sid"]


def test_a_calls_life_driven_by_fetches_alone(calling_api, participation, provider, run_jobs):
    call = _create(calling_api, participation).get_json()
    path = f"/api/phone_calls/{call['id']}"
    refused = calling_api.post(f"{path}/phone_call_events", data={"event": "queue_remote_fetch"})
    assert refused.status_code == 422
    calling_api.post(f"{path}/phone_call_events", data={"event": "queue"})
    run_jobs()
    sid = calling_api.get(path).get_json()["remote_call_id"]
    for remote, local in [("queued", "remotely_queued"), ("in-progress", "in_progress"), ("completed", "completed")]:
        provider.set_status(sid, remote, duration=42 if remote == "completed" else None)
        response = calling_api.post(f"{path}/phone_call_events", data={"event": "queue_remote_fetch"})
        assert response.status_code == 201 and response.get_json()["status"] == "remote_fetch_queued"
        run_jobs()
        fetched = calling_api.get(path).get_json()
        assert fetched["status"] == local and fetched["remote_status"] == remote
        assert fetched["remote_response"]["status"] == remote
    assert fetched["duration"] == 42
    assert calling_api.post(f"{path}/phone_call_events", data={"event": "queue_remote_fetch"}).status_code == 422
    assert calling_api.post(f"{path}/phone_call_events", data={"event": "remotely_queue"}).status_code == 422


def test_phone_call_index_routes_and_filters(calling_api, participation, other_api):
    call = _create(calling_api, participation).get_json()
    for path in ["/api/phone_calls", f"/api/callout_participations/{participation['id']}/phone_calls",
                 f"/api/contacts/{participation['contact_id']}/phone_calls",
                 f"/api/callouts/{participation['callout_id']}/phone_calls",
                 "/api/phone_calls?q[status]=created", "/api/phone_calls?q[msisdn]=252662345678",
                 "/api/phone_calls?q[remote_request_params][from]=1234",
                 "/api/phone_calls?q[remote_request_params][url]=https://demo.twilio.com/docs/voice.xml",
                 "/api/phone_calls?q[created_at_or_after]=2017-11-29", "/api/phone_calls?q[remotely_queued_at_before]=2030-01-01"]:
        response = calling_api.get(path)
        assert response.status_code == 200, (path, response.get_json())
        expected = 0 if "remotely_queued_at" in path else 1
        assert response.headers["Total"] == str(expected), path
    assert calling_api.get("/api/phone_calls?q[remote_status]=queued").headers["Total"] == "0"
    assert other_api.get(f"/api/phone_calls/{call['id']}").status_code == 404
    assert other_api.get(f"/api/callout_participations/{participation['id']}/phone_calls").status_code == 404
    assert calling_api.delete(f"/api/phone_calls/{call['id']}").status_code == 204


def test_call_flow_logic_is_inherited_and_validated(calling_api, participation):
    call = _create(calling_api, participation).get_json()
    assert call["call_flow_logic"] is None
    calling_api.patch(f"/api/callouts/{participation['callout_id']}", data={"call_flow_logic": "CallFlowLogic::HelloWorld"})
    assert calling_api.get(f"/api/phone_calls/{call['id']}").get_json()["call_flow_logic"] == "CallFlowLogic::HelloWorld"
    refused = calling_api.patch(f"/api/phone_calls/{call['id']}", data={"call_flow_logic": "CallFlowLogic::Nope"})
    assert refused.get_json() == {"errors": {"call_flow_logic": ["is not included in the list"]}}
    assert calling_api.patch(f"/api/phone_calls/{call['id']}",
                             data={"call_flow_logic": "CallFlowLogic::AvfCapom::CapomShort"}).status_code == 204
    assert calling_api.get(f"/api/phone_calls/{call['id']}").get_json()["call_flow_logic"] == (
        "CallFlowLogic::AvfCapom::CapomShort")


def test_one_call_in_flight_per_participation(calling_api, participation, run_jobs):
    first = _create(calling_api, participation).get_json()
    second = _create(calling_api, participation).get_json()
    assert calling_api.post(f"/api/phone_calls/{first['id']}/phone_call_events", data={"event": "queue"}).status_code == 201
    refused = calling_api.post(f"/api/phone_calls/{second['id']}/phone_call_events", data={"event": "queue"})
    assert refused.status_code == 422
    assert "already in progress" in refused.get_json()["errors"]["base"][0]
    assert calling_api.get(f"/api/phone_calls/{second['id']}").get_json()["status"] == "created"


__all__ = ["Api"]


def test_filtering_by_call_flow_logic_finds_the_value_the_json_shows(calling_api):
    hello, play, capom = ("CallFlowLogic::HelloWorld", "CallFlowLogic::PlayMessage",
                          "CallFlowLogic::AvfCapom::CapomShort")
    callout = calling_api.post("/api/callouts", data={"call_flow_logic": hello}).get_json()
    plain = calling_api.post("/api/callouts").get_json()
    participations = []
    for n, (parent, own) in enumerate([(callout, None), (callout, play), (plain, None)]):
        contact = calling_api.post("/api/contacts", data={"msisdn": f"+25266234567{n}"}).get_json()
        data = {"contact_id": contact["id"], **({"call_flow_logic": own} if own else {})}
        participations.append(calling_api.post(f"/api/callouts/{parent['id']}/callout_participations",
                                               data=data).get_json())
    inherits_callout, inherits_participation, own_value, no_value = (
        _create(calling_api, participations[0]).get_json(), _create(calling_api, participations[1]).get_json(),
        _create(calling_api, participations[0], data={**DEMO, "call_flow_logic": capom}).get_json(),
        _create(calling_api, participations[2]).get_json())
    for name, expected in [(hello, [inherits_callout]), (play, [inherits_participation]), (capom, [own_value])]:
        found = calling_api.get(f"/api/phone_calls?q[call_flow_logic]={name}").get_json()
        assert [call["id"] for call in found] == [call["id"] for call in expected], name
        assert {call["call_flow_logic"] for call in found} == {name}
    assert no_value["call_flow_logic"] is None
    found = calling_api.get(f"/api/phone_calls?q[call_flow_logic]={hello}&q[contact_id]={participations[0]['contact_id']}")
    assert found.headers["Total"] == "1"
    for name, expected in [(hello, participations[0]), (play, participations[1])]:
        found = calling_api.get(f"/api/callout_participations?q[call_flow_logic]={name}").get_json()
        assert [p["id"] for p in found] == [expected["id"]] and found[0]["call_flow_logic"] == name
