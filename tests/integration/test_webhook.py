"""The provider webhook: signed status callbacks and voice requests, and the events API."""
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest
from sqlalchemy import event, text

from scfm.bootstrap import Deps
from scfm.entrypoints.app import create_app

from tests.integration.conftest import PROVIDER_SID, PROVIDER_TOKEN, signed_webhook
from tests.integration.test_phone_calls_api import DEMO


@pytest.fixture
def remote_call(calling_api, run_jobs):
    contact = calling_api.post("/api/contacts", data={"msisdn": "+252662345678"}).get_json()
    callout = calling_api.post("/api/callouts").get_json()
    participation = calling_api.post(f"/api/callouts/{callout['id']}/callout_participations",
                                     data={"contact_id": contact["id"]}).get_json()
    call = calling_api.post(f"/api/callout_participations/{participation['id']}/phone_calls", data=DEMO).get_json()
    calling_api.post(f"/api/phone_calls/{call['id']}/phone_call_events", data={"event": "queue"})
    run_jobs()
    return calling_api.get(f"/api/phone_calls/{call['id']}").get_json()


def _params(call, status, **extra):
    return {"CallSid": call["remote_call_id"], "AccountSid": PROVIDER_SID, "From": "1234", "To": call["msisdn"],
            "CallStatus": status, "Direction": "outbound-api", "ApiVersion": "2010-04-01", **extra}


def _event_count(deps):
    with deps.engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM remote_phone_call_events")).scalar()


def test_signed_callbacks_drive_a_call_to_completion_and_late_ones_change_nothing(calling_api, remote_call, deps):
    client, path = calling_api.client, f"/api/phone_calls/{remote_call['id']}"
    for remote, local in [("ringing", "in_progress"), ("in-progress", "in_progress"), ("completed", "completed")]:
        extra = {"CallDuration": "17"} if remote == "completed" else {}
        response = signed_webhook(client, _params(remote_call, remote, **extra))
        assert response.status_code == 201
        assert response.mimetype == "application/xml"
        assert ET.fromstring(response.data).tag == "Response"
        call = calling_api.get(path).get_json()
        assert (call["status"], call["remote_status"]) == (local, remote)
    assert call["duration"] == 17
    # a replayed webhook records nothing, and the call stays completed
    assert signed_webhook(client, _params(remote_call, "ringing")).status_code == 200
    assert signed_webhook(client, _params(remote_call, "completed", CallDuration="17")).status_code == 200
    assert calling_api.get(path).get_json()["status"] == "completed"
    events = calling_api.get(f"{path}/remote_phone_call_events")
    assert events.headers["Total"] == "3"
    first = events.get_json()[0]
    assert first["details"]["CallStatus"] == "ringing" and first["remote_call_id"] == remote_call["remote_call_id"]
    assert first["call_flow_logic"] == "CallFlowLogic::Application" and first["phone_call_id"] == remote_call["id"]


def test_a_replayed_callback_records_nothing_and_remote_status_never_moves_back(calling_api, remote_call, deps):
    client, path = calling_api.client, f"/api/phone_calls/{remote_call['id']}"
    assert signed_webhook(client, _params(remote_call, "ringing")).status_code == 201
    completed = _params(remote_call, "completed", CallDuration="17")
    first = signed_webhook(client, completed)
    assert first.status_code == 201 and first.headers["Location"].startswith("/api/remote_phone_call_events/")
    for _ in range(3):  # the same signed request again: answered (as the call now stands), recorded once
        replay = signed_webhook(client, completed)
        assert replay.status_code == 200 and "Location" not in replay.headers
        assert ET.fromstring(replay.data).tag == "Response"
    assert _event_count(deps) == 2
    # a late report of an earlier status is a request of its own: recorded, but the call keeps its last word
    late = signed_webhook(client, _params(remote_call, "in-progress", CallDuration="3", Timestamp="late"))
    assert late.status_code == 201 and _event_count(deps) == 3
    call = calling_api.get(path).get_json()
    assert (call["status"], call["remote_status"], call["duration"]) == ("completed", "completed", 17)
    with deps.engine.connect() as conn:
        digests = conn.execute(text("SELECT count(DISTINCT request_digest) FROM remote_phone_call_events")).scalar()
    assert digests == 3


def test_a_parameter_the_webhook_reads_given_twice_is_a_422_and_records_nothing(calling_api, remote_call, deps):
    from twilio.request_validator import RequestValidator
    from werkzeug.datastructures import MultiDict

    url = "http://scfm.test/api/remote_phone_call_events"
    for name, values in [("CallStatus", ["completed", "in-progress"]), ("Digits", ["1", "2"]),
                         ("CallSid", [remote_call["remote_call_id"]] * 2)]:
        form = MultiDict(_params(remote_call, "completed"))
        form.setlist(name, values)
        signature = RequestValidator(PROVIDER_TOKEN).compute_signature(url, form)
        response = calling_api.client.post(url, data=form, headers={"X-Twilio-Signature": signature})
        assert response.status_code == 422, name
        assert response.get_json() == {"errors": {name: ["must be given once"]}}
    assert _event_count(deps) == 0
    assert calling_api.get(f"/api/phone_calls/{remote_call['id']}").get_json()["status"] == "remotely_queued"
    # a parameter the webhook does not read is kept, with its values, in the event's details
    form = MultiDict(_params(remote_call, "ringing"))
    form.setlist("Extra", ["a", "b"])
    signature = RequestValidator(PROVIDER_TOKEN).compute_signature(url, form)
    assert calling_api.client.post(url, data=form, headers={"X-Twilio-Signature": signature}).status_code == 201
    [event] = calling_api.get("/api/remote_phone_call_events").get_json()
    assert event["details"]["Extra"] == ["a", "b"]


def test_an_inbound_call_naming_another_accounts_call_sid_is_answered_as_any_unknown_sid(
        app, admin, calling_api, remote_call, deps):
    from tests.integration.conftest import new_account_api

    other_sid, other_token = "AC" + "2" * 32, "other-auth-token"
    other = new_account_api(app, admin, platform_provider_name="twilio", twilio_account_sid=other_sid,
                            twilio_auth_token=other_token)
    inbound = {"CallSid": remote_call["remote_call_id"], "AccountSid": other_sid, "From": "+85510202103",
               "To": "1294", "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01"}
    unknown = {**inbound, "CallSid": "CA" + "7" * 32}
    answers = [signed_webhook(other.client, params, token=other_token) for params in (inbound, unknown)]
    assert [a.status_code for a in answers] == [201, 201]
    assert answers[0].data == answers[1].data
    calls = other.get("/api/phone_calls?q[remote_direction]=inbound").get_json()
    assert sorted(c["remote_call_id"] for c in calls) == sorted([inbound["CallSid"], unknown["CallSid"]])
    assert all(c["status"] == "in_progress" for c in calls)
    # the first account's call is untouched, and still reported on as its own
    mine = calling_api.get(f"/api/phone_calls/{remote_call['id']}").get_json()
    assert (mine["status"], mine["remote_status"]) == ("remotely_queued", "queued")
    assert calling_api.get(f"/api/phone_calls/{remote_call['id']}/remote_phone_call_events").headers["Total"] == "0"
    assert signed_webhook(calling_api.client, _params(remote_call, "completed")).status_code == 201
    assert calling_api.get(f"/api/phone_calls/{remote_call['id']}").get_json()["status"] == "completed"
    assert other.get(f"/api/phone_calls/{calls[0]['id']}").get_json()["status"] == "in_progress"


@pytest.mark.parametrize("prepared", [True, False], ids=["prepared statements", "prepared_statements=false"])
def test_callbacks_are_recorded_with_and_without_prepared_statements(calling_api, remote_call, settings, prepared):
    url = settings.database_url
    if not prepared:  # as behind a PgBouncer in transaction mode
        url += ("&" if "?" in url else "?") + "prepared_statements=false"
    deps = Deps(replace(settings, database_url=url))
    statements = []
    event.listen(deps.engine, "before_cursor_execute", lambda *args: statements.append(args[2].split()[0]))
    client = create_app(deps).test_client()
    try:
        for status in ("ringing", "in-progress"):
            assert signed_webhook(client, _params(remote_call, status)).status_code == 201
        deps.engine.dispose()  # a new connection knows no prepared statement: they are prepared again
        assert signed_webhook(client, _params(remote_call, "completed")).status_code == 201
    finally:
        deps.engine.dispose()
    call = calling_api.get(f"/api/phone_calls/{remote_call['id']}").get_json()
    assert (call["status"], call["remote_status"]) == ("completed", "completed")
    assert calling_api.get(f"/api/phone_calls/{remote_call['id']}/remote_phone_call_events").headers["Total"] == "3"
    if prepared:  # planned once per connection (two here): the lookup, and the write of these columns
        assert statements.count("PREPARE") == 4 and statements.count("EXECUTE") == 6
    else:
        assert "PREPARE" not in statements and "EXECUTE" not in statements


def test_the_default_call_flow_logic_answers_with_its_twiml(calling_api, remote_call):
    response = signed_webhook(calling_api.client, _params(remote_call, "in-progress"))
    root = ET.fromstring(response.data)
    assert root.find("Say").text == "Thanks for trying our documentation. Enjoy!"
    assert root.find("Play").text.endswith(".mp3")


def test_capom_short_gathers_answers_into_the_calls_metadata(calling_api, remote_call, deps):
    path = f"/api/phone_calls/{remote_call['id']}"
    with deps.engine.begin() as conn:  # a call already dialed keeps its call flow logic: set it as an operator would
        conn.execute(text("UPDATE phone_calls SET call_flow_logic = 'CallFlowLogic::AvfCapom::CapomShort'"))
    first = ET.fromstring(signed_webhook(calling_api.client, _params(remote_call, "in-progress")).data)
    assert first.find("Gather") is not None
    signed_webhook(calling_api.client, _params(remote_call, "in-progress", Digits="1"))
    assert calling_api.get(path).get_json()["metadata"]["capom"] == {"q1": "1"}


def test_capom_short_answers_come_back_to_the_url_of_their_question_so_equal_digits_are_not_replays(
        calling_api, remote_call, deps):
    with deps.engine.begin() as conn:
        conn.execute(text("UPDATE phone_calls SET call_flow_logic = 'CallFlowLogic::AvfCapom::CapomShort'"))
    status_callback = f"/api/remote_phone_call_events?phone_call_id={remote_call['id']}"
    query = status_callback.partition("?")[2]
    twiml = ET.fromstring(signed_webhook(calling_api.client, _params(remote_call, "in-progress"), query=query).data)
    for _ in range(3):  # "1" to every question: three requests alike but for the question in their URL
        action = twiml.find("Gather").get("action")
        assert action.startswith("http://scfm.test/api/remote_phone_call_events?")
        response = signed_webhook(calling_api.client, _params(remote_call, "in-progress", Digits="1"),
                                  query=action.partition("?")[2])
        assert response.status_code == 201
        twiml = ET.fromstring(response.data)
    assert [child.tag for child in twiml] == ["Say", "Hangup"]
    call = calling_api.get(f"/api/phone_calls/{remote_call['id']}").get_json()
    assert call["metadata"]["capom"] == {"q1": "1", "q2": "1", "q3": "1"}
    assert _event_count(deps) == 4


def test_bad_signatures_unknown_accounts_and_missing_fields_leave_no_row(calling_api, remote_call, deps):
    client = calling_api.client
    before = _event_count(deps)
    assert signed_webhook(client, _params(remote_call, "completed"), signature="forged").status_code == 403
    assert signed_webhook(client, _params(remote_call, "completed"), token="wrong").status_code == 403
    altered = _params(remote_call, "completed")
    from twilio.request_validator import RequestValidator
    signature = RequestValidator(PROVIDER_TOKEN).compute_signature(
        "http://scfm.test/api/remote_phone_call_events", _params(remote_call, "busy"))
    assert signed_webhook(client, altered, signature=signature).status_code == 403
    unknown_account = {**_params(remote_call, "completed"), "AccountSid": "AC" + "9" * 32}
    assert signed_webhook(client, unknown_account).status_code == 403
    assert client.post("/api/remote_phone_call_events", data={}).status_code == 403
    missing_sid = {k: v for k, v in _params(remote_call, "completed").items() if k != "CallSid"}
    assert signed_webhook(client, missing_sid).status_code == 422
    unknown_call = {**_params(remote_call, "completed"), "CallSid": "CA" + "0" * 32}
    assert signed_webhook(client, unknown_call).status_code == 404
    assert _event_count(deps) == before
    assert calling_api.get(f"/api/phone_calls/{remote_call['id']}").get_json()["status"] == "remotely_queued"


def test_an_inbound_call_creates_the_contact_and_the_call_in_the_account(calling_api):
    params = {"CallSid": "CA" + "5" * 32, "AccountSid": PROVIDER_SID, "From": "+85510202103", "To": "1294",
              "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01"}
    response = signed_webhook(calling_api.client, params)
    assert response.status_code == 201
    assert signed_webhook(calling_api.client, {**params, "CallStatus": "in-progress"}).status_code == 201
    [call] = calling_api.get("/api/phone_calls?q[remote_direction]=inbound").get_json()
    assert call["status"] == "in_progress" and call["msisdn"] == "+85510202103"
    assert call["callout_participation_id"] is None
    [contact] = calling_api.get("/api/contacts?q[msisdn]=85510202103").get_json()
    assert call["contact_id"] == contact["id"]
    assert calling_api.get(f"/api/contacts/{contact['id']}/remote_phone_call_events").headers["Total"] == "2"


def test_a_new_inbound_call_reported_twice_at_once_is_made_once_and_both_requests_are_answered(
        calling_api, app, monkeypatch):
    import threading

    from scfm.adapters.postgres.provider_reports import ProviderReports

    params = {"CallSid": "CA" + "6" * 32, "AccountSid": PROVIDER_SID, "From": "+85510202104", "To": "1294",
              "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01"}
    find, answers = ProviderReports.find, []

    def find_then_let_the_other_request_in(self, account_sid, call_sid):
        found = find(self, account_sid, call_sid)
        if not answers:  # the first request found no call; the same request, sent again, now makes it first
            answers.append(None)
            other = threading.Thread(target=lambda: answers.append(signed_webhook(app.test_client(), params)))
            other.start()
            other.join()
        return found

    monkeypatch.setattr(ProviderReports, "find", find_then_let_the_other_request_in)
    first = signed_webhook(calling_api.client, params)
    second = answers[1]
    assert second.status_code == 201 and first.status_code == 200  # the later one is the other's replay
    assert first.get_data() == second.get_data() and b"<Response>" in first.get_data()
    [call] = calling_api.get("/api/phone_calls?q[remote_direction]=inbound").get_json()
    assert call["remote_call_id"] == params["CallSid"] and call["status"] == "in_progress"
    assert calling_api.get(f"/api/phone_calls/{call['id']}/remote_phone_call_events").headers["Total"] == "1"
    assert calling_api.get("/api/contacts?q[msisdn]=85510202104").headers["Total"] == "1"


def test_events_api_filters_and_updates_metadata(calling_api, remote_call, other_api):
    signed_webhook(calling_api.client, _params(remote_call, "ringing"))
    [event] = calling_api.get("/api/remote_phone_call_events").get_json()
    path = f"/api/remote_phone_call_events/{event['id']}"
    assert calling_api.patch(path, data={"metadata[foo]": "bar"}).status_code == 204
    assert calling_api.get(path).get_json()["metadata"] == {"foo": "bar"}
    for query in ["q[details][CallStatus]=ringing", f"q[phone_call_id]={remote_call['id']}",
                  f"q[remote_call_id]={remote_call['remote_call_id']}", "q[remote_direction]=outbound-api",
                  "q[call_flow_logic]=CallFlowLogic::Application", "q[metadata][foo]=bar"]:
        assert calling_api.get(f"/api/remote_phone_call_events?{query}").headers["Total"] == "1", query
    participation_id = remote_call["callout_participation_id"]
    callout_id = calling_api.get(f"/api/callout_participations/{participation_id}").get_json()["callout_id"]
    for nested in [f"/api/callouts/{callout_id}", f"/api/callout_participations/{participation_id}",
                   f"/api/contacts/{remote_call['contact_id']}", f"/api/phone_calls/{remote_call['id']}"]:
        assert calling_api.get(f"{nested}/remote_phone_call_events").headers["Total"] == "1", nested
    assert other_api.get(path).status_code == 404
    assert other_api.get("/api/remote_phone_call_events").headers["Total"] == "0"
    assert calling_api.get("/api/remote_phone_call_events?q[foo]=bar").status_code == 422


def test_behind_a_trusted_proxy_the_forwarded_url_is_the_signed_one(app, calling_api, remote_call, deps, monkeypatch):
    from dataclasses import replace
    monkeypatch.setattr(deps, "settings", replace(deps.settings, public_url=None, trust_proxy=True))
    from twilio.request_validator import RequestValidator
    params = _params(remote_call, "ringing")
    url = "https://calls.example.org/api/remote_phone_call_events"
    signature = RequestValidator(PROVIDER_TOKEN).compute_signature(url, params)
    response = calling_api.client.post("/api/remote_phone_call_events", data=params, headers={
        "X-Twilio-Signature": signature, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "calls.example.org"})
    assert response.status_code == 201


def _signed(params, path="/api/remote_phone_call_events"):
    from twilio.request_validator import RequestValidator

    from tests.integration.conftest import PUBLIC_URL

    return RequestValidator(PROVIDER_TOKEN).compute_signature(PUBLIC_URL + path, params)


def test_a_callback_is_answered_alike_sized_chunked_or_with_a_charset(calling_api, remote_call, deps):
    import io
    from urllib.parse import urlencode

    client, path = calling_api.client, "/api/remote_phone_call_events"

    def post(params, how):
        body, headers = urlencode(params).encode(), {"X-Twilio-Signature": _signed(params)}
        if how == "chunked":  # as a WSGI server that decodes a chunked body hands it on: no Content-Length
            return client.post(path, input_stream=io.BytesIO(body), content_type="application/x-www-form-urlencoded",
                               headers={**headers, "Transfer-Encoding": "chunked"},
                               environ_overrides={"wsgi.input_terminated": True})
        content_type = "application/x-www-form-urlencoded" + ("; charset=UTF-8" if how == "charset" else "")
        return client.post(path, data=body, content_type=content_type, headers=headers)

    answers = [post(_params(remote_call, status, **extra), how) for status, extra, how in [
        ("ringing", {}, "sized"), ("in-progress", {}, "chunked"), ("completed", {"CallDuration": "5"}, "charset"),
        ("ringing", {}, "chunked"), ("in-progress", {}, "sized")]]
    assert [answer.status_code for answer in answers] == [201, 201, 201, 200, 200]  # the last two: replays
    assert len({answer.data for answer in answers}) == 1
    assert all(answer.headers["Content-Type"] == "application/xml; charset=utf-8" for answer in answers)
    assert [answer.headers.get("Location", "").rsplit("/", 1)[0] for answer in answers[:3]] == [path] * 3
    call = calling_api.get(f"/api/phone_calls/{remote_call['id']}").get_json()
    assert (call["status"], call["remote_status"], call["duration"]) == ("completed", "completed", 5)
    assert _event_count(deps) == 3


def test_a_callback_postgresql_cannot_store_or_cut_short_is_refused_and_records_nothing(calling_api, remote_call,
                                                                                        deps):
    import io

    client, path = calling_api.client, "/api/remote_phone_call_events"
    nul = _params(remote_call, "ringing", Caller="12\x0034")
    response = client.post(path, data=nul, headers={"X-Twilio-Signature": _signed(nul)})
    assert response.status_code == 400
    assert response.get_json() == {"errors": {"base": ["the body must not contain NUL characters"]}}

    ringing = _params(remote_call, "ringing")
    query = "phone_call_id=%00"
    response = client.post(f"{path}?{query}", data=ringing,
                           headers={"X-Twilio-Signature": _signed(ringing, f"{path}?{query}")})
    assert response.status_code == 400
    assert response.get_json() == {"errors": {"base": ["the query must not contain NUL characters"]}}

    huge = _params(remote_call, "completed", CallDuration="99999999999")  # beyond PostgreSQL's integer
    response = client.post(path, data=huge, headers={"X-Twilio-Signature": _signed(huge)})
    assert response.status_code == 400
    assert response.get_json() == {"errors": {"base": ["a value is out of range or cannot be stored"]}}

    short = client.post(path, input_stream=io.BytesIO(b"AccountSid=AC"),
                        content_type="application/x-www-form-urlencoded", headers={"X-Twilio-Signature": "x"}, environ_overrides={"CONTENT_LENGTH": "100"})
    assert (short.status_code, short.get_json()) == (400, {"status": 400, "error": "Bad Request"})
    not_utf8 = client.post(path, data=b"AccountSid=" + PROVIDER_SID.encode() + b"&From=\xff",
                           content_type="application/x-www-form-urlencoded", headers={"X-Twilio-Signature": "x"})
    assert not_utf8.status_code == 403  # no form at all, as werkzeug reads it: no AccountSid
    assert _event_count(deps) == 0
    call = calling_api.get(f"/api/phone_calls/{remote_call['id']}").get_json()
    assert (call["status"], call["remote_status"]) == ("remotely_queued", "queued")


def test_a_connection_lost_under_a_callback_is_a_503_and_the_next_callback_is_recorded(calling_api, remote_call, deps):
    client = calling_api.client
    assert signed_webhook(client, _params(remote_call, "ringing")).status_code == 201
    with deps.engine.connect() as conn:  # the server drops every other connection, the pooled ones included
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    answers = [signed_webhook(client, _params(remote_call, "in-progress")).status_code for _ in range(2)]
    assert answers in ([503, 201], [201, 200])  # a connection found dead in use, or pinged first and replaced
    assert _event_count(deps) == 2
