"""Callout statistics, the account's, a callout's `finished`, and its results as CSV (issue 12)."""
import csv
import io

from sqlalchemy import text

from tests.integration.conftest import PROVIDER_SID, signed_webhook
from tests.integration.guide import CAPOM_SHORT

DEMO = {"parameters[remote_request_params][from]": "1234",
        "parameters[remote_request_params][url]": "https://demo.twilio.com/docs/voice.xml",
        "parameters[remote_request_params][method]": "GET"}
STATES = ("to_call", "waiting_for_window", "queued", "in_flight", "done")


def _callout_with(api, n, **fields):
    callout = api.post("/api/callouts", data=fields).get_json()
    participations = []
    for i in range(n):
        contact = api.post("/api/contacts", data={"msisdn": f"+25266{callout['id']:03d}{i:04d}",
                                                  "metadata[gender]": "f" if i % 2 == 0 else "m",
                                                  "metadata[address][province]": "Kandal"}).get_json()
        participations.append(api.post(f"/api/callouts/{callout['id']}/callout_participations",
                                       data={"contact_id": contact["id"]}).get_json())
    return callout, participations


def _run(api, run_jobs, **data):
    operation = api.post("/api/batch_operations", data=data).get_json()
    api.post(f"/api/batch_operations/{operation['id']}/batch_operation_events", data={"event": "queue"})
    run_jobs()


def _report(client, call, status, **extra):
    response = signed_webhook(client, {
        "CallSid": call["remote_call_id"], "AccountSid": PROVIDER_SID, "From": "1234", "To": call["msisdn"],
        "CallStatus": status, "Direction": "outbound-api", "ApiVersion": "2010-04-01", **extra})
    assert response.status_code == 201, response.data


def _statistics(api, callout_id):
    response = api.get(f"/api/callouts/{callout_id}/statistics")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert sum(body["states"].values()) == body["participations"]
    assert body["states"]["done"] == sum(body["outcomes"].values())
    return body


def test_a_callout_driven_by_batch_operations(calling_api, run_jobs):
    api = calling_api
    callout, participations = _callout_with(api, 4, call_flow_logic=CAPOM_SHORT)
    assert api.get(f"/api/callouts/{callout['id']}").get_json()["finished"] is False
    before = _statistics(api, callout["id"])
    assert before["states"] == {**dict.fromkeys(STATES, 0), "to_call": 4}
    assert before["attempts"] == 0 and before["answer_rate"] is None
    assert before["duration"] == {"answered_calls": 0, "median_seconds": None, "total_seconds": 0}

    _run(api, run_jobs, type="BatchOperation::PhoneCallCreate", **DEMO)
    _run(api, run_jobs, type="BatchOperation::PhoneCallQueue", **{
        "parameters[phone_call_filter_params][status]": "created", "parameters[limit]": "3"})
    calls = {call["callout_participation_id"]: call
             for call in api.get(f"/api/callouts/{callout['id']}/phone_calls").get_json()}
    answered, busy, ringing, never = (calls[p["id"]] for p in participations)
    assert {answered["status"], busy["status"], ringing["status"]} == {"remotely_queued"}
    _report(api.client, answered, "in-progress", Digits="2")  # CapomShort's first question, answered "2"
    _report(api.client, answered, "completed", CallDuration="30")
    _report(api.client, busy, "busy")
    _report(api.client, ringing, "ringing")

    stats = _statistics(api, callout["id"])
    assert stats["participations"] == 4
    assert stats["states"] == {"to_call": 1, "waiting_for_window": 0, "queued": 0, "in_flight": 1, "done": 2}
    assert {key: value for key, value in stats["outcomes"].items() if value} == {"completed": 1, "busy": 1}
    assert (stats["calls"], stats["attempts"], stats["answered"]) == (4, 3, 1)
    assert stats["answer_rate"] == 0.5  # one answered of the two attempts that ended
    assert stats["duration"] == {"answered_calls": 1, "median_seconds": 30.0, "total_seconds": 30}
    assert len(stats["calls_per_minute"]) == 10 and stats["calls_per_minute"][-1]["calls"] == 3
    assert stats["finished"] is False
    # without a call plan only queued calls dial on their own: the created one waits for a batch operation
    assert stats["estimate"]["calls_left"] == 0 and stats["estimate"]["seconds_left"] == 0
    assert stats["estimate"]["calls_per_second"] == 50
    assert len(api.get(f"/api/callouts/{callout['id']}/statistics?minutes=3").get_json()["calls_per_minute"]) == 3
    assert api.get(f"/api/callouts/{callout['id']}/statistics?minutes=0").status_code == 422

    response = api.get(f"/api/callouts/{callout['id']}/results.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == f'attachment; filename="callout-{callout["id"]}-results.csv"'
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert list(rows[0]) == ["callout_participation_id", "contact_id", "msisdn", "calls", "attempts", "last_status",
                             "outcome", "finished_at", "duration", "metadata.address.province", "metadata.gender",
                             "call.metadata.capom.q1"]
    assert [row["callout_participation_id"] for row in rows] == [str(p["id"]) for p in participations]
    first, second, third, fourth = rows
    assert (first["msisdn"], first["metadata.gender"], first["metadata.address.province"]) == (
        participations[0]["msisdn"], "f", "Kandal")
    assert (first["calls"], first["attempts"], first["last_status"], first["duration"]) == ("1", "1", "completed", "30")
    assert first["call.metadata.capom.q1"] == "2"
    assert (second["last_status"], second["duration"], second["call.metadata.capom.q1"]) == ("busy", "", "")
    assert third["last_status"] == "in_progress"
    assert (fourth["attempts"], fourth["last_status"], fourth["outcome"]) == ("0", "created", "")

    # every call ends: the callout is finished
    _run(api, run_jobs, type="BatchOperation::PhoneCallQueue", **{"parameters[phone_call_filter_params][status]": "created"})
    _report(api.client, ringing, "no-answer")
    _report(api.client, api.get(f"/api/phone_calls/{never['id']}").get_json(), "failed")
    stats = _statistics(api, callout["id"])
    assert stats["states"]["done"] == 4 and stats["finished"] is True
    assert api.get(f"/api/callouts/{callout['id']}").get_json()["finished"] is True
    listed = api.get("/api/callouts").get_json()
    assert [(c["id"], c["finished"]) for c in listed] == [(callout["id"], True)]


def _set(deps, sql, **params):
    with deps.engine.begin() as conn:
        conn.execute(text(sql), params)


def test_every_participation_in_exactly_one_state(api, deps):
    """Rows set as the dialer, the provider and a call plan's runner would leave them, one in each state."""
    callout, participations = _callout_with(api, 9)
    ids = [p["id"] for p in participations]
    # calls for all but the first; then their statuses, one by one
    _set(deps, """INSERT INTO phone_calls (account_id, callout_participation_id, contact_id, msisdn)
                  SELECT account_id, id, contact_id, msisdn FROM callout_participations WHERE id <> :first""",
         first=ids[0])
    statuses = {ids[1]: "created", ids[2]: "queued", ids[3]: "queued", ids[4]: "remotely_queued",
                ids[5]: "in_progress", ids[6]: "busy", ids[7]: "completed", ids[8]: "not_answered"}
    for pid, status in statuses.items():
        _set(deps, "UPDATE phone_calls SET status = :status, remote_call_id = CASE WHEN :status IN "
                   "('queued', 'created') THEN NULL ELSE 'CA' || id END, "
                   "duration = CASE WHEN :status = 'completed' THEN 12 END WHERE callout_participation_id = :pid",
             status=status, pid=pid)
    _set(deps, "UPDATE phone_calls SET waiting_for_window = true WHERE callout_participation_id = :pid", pid=ids[3])
    stats = _statistics(api, callout["id"])
    assert stats["states"] == {"to_call": 2, "waiting_for_window": 1, "queued": 1, "in_flight": 2, "done": 3}
    assert {k: v for k, v in stats["outcomes"].items() if v} == {"busy": 1, "completed": 1, "not_answered": 1}
    assert (stats["attempts"], stats["answered"], stats["answer_rate"]) == (5, 1, round(1 / 3, 4))
    assert stats["duration"] == {"answered_calls": 1, "median_seconds": 12.0, "total_seconds": 12}

    # under a call plan an unanswered end may be retried (to call) until the runner settles its outcome
    _set(deps, """UPDATE callouts SET call_plan = '{"max_attempts": 3, "window": {"time_zone": "Asia/Phnom_Penh",
                  "days": [1, 2, 3, 4, 5, 6, 7], "from": "00:00", "to": "24:00"}}' WHERE id = :id""", id=callout["id"])
    stats = _statistics(api, callout["id"])
    assert stats["states"] == {"to_call": 4, "waiting_for_window": 1, "queued": 1, "in_flight": 2, "done": 1}
    _set(deps, "UPDATE callout_participations SET outcome = last_phone_call_status, finished_at = now() "
               "WHERE id IN (:busy, :not_answered)", busy=ids[6], not_answered=ids[8])
    _set(deps, "UPDATE callout_participations SET outcome = 'expired', finished_at = now() WHERE id = :id", id=ids[0])
    stats = _statistics(api, callout["id"])
    assert stats["states"] == {"to_call": 1, "waiting_for_window": 1, "queued": 1, "in_flight": 2, "done": 4}
    assert {k: v for k, v in stats["outcomes"].items() if v} == {
        "busy": 1, "completed": 1, "not_answered": 1, "expired": 1}
    # initialized with a call plan: nothing dials until it starts
    assert stats["estimate"]["calls_left"] == 3 and stats["estimate"]["seconds_left"] is None
    api.post(f"/api/callouts/{callout['id']}/callout_events", data={"event": "start"})
    estimate = _statistics(api, callout["id"])["estimate"]
    assert estimate["calls_per_second"] == 1.0 and estimate["seconds_left"] == 3.0
    # a participation removed leaves the counts adding up
    _set(deps, "DELETE FROM phone_calls WHERE callout_participation_id = :id", id=ids[1])
    assert api.delete(f"/api/callout_participations/{ids[1]}").status_code == 204
    stats = _statistics(api, callout["id"])
    assert stats["participations"] == 8 and stats["states"]["to_call"] == 0

    # the account's statistics add up its callouts
    other, _ = _callout_with(api, 2)
    account = api.get("/api/account/statistics")
    assert account.status_code == 200
    body = account.get_json()
    assert body["participations"] == 10 and body["states"]["to_call"] == 2
    assert sum(body["states"].values()) == 10


def test_another_accounts_callout_is_not_found(api, other_api):
    callout, _ = _callout_with(api, 2)
    for path in (f"/api/callouts/{callout['id']}/statistics", f"/api/callouts/{callout['id']}/results.csv",
                 "/api/callouts/999999/statistics", "/api/callouts/999999/results.csv"):
        response = other_api.get(path)
        assert response.status_code == 404 and response.get_json() == {"status": 404, "error": "Not Found"}
    mine = other_api.get("/api/account/statistics").get_json()
    assert mine["participations"] == 0 and mine["finished"] is False
    assert api.get("/api/account/statistics").get_json()["participations"] == 2
    assert other_api.get(f"/api/callouts/{callout['id']}/statistics").status_code == 404
    assert api.get("/api/openapi.json").get_json()["paths"].keys() >= {
        "/api/callouts/{callout_id}/statistics", "/api/account/statistics", "/api/callouts/{callout_id}/results.csv"}
