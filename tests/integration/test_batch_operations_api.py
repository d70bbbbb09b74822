"""Batch operations: populate callouts, create, queue and fetch phone calls in bulk, with previews."""
import pytest

from scfm.entrypoints import jobs

DEMO = {"parameters[remote_request_params][from]": "1234",
        "parameters[remote_request_params][url]": "https://demo.twilio.com/docs/voice.xml",
        "parameters[remote_request_params][method]": "GET"}


def _ids(api, path):
    """Every id a paginated list shows, across all its pages."""
    ids, page = [], 1
    while True:
        response = api.get(f"{path}{'&' if '?' in path else '?'}per_page=100&page={page}")
        assert response.status_code == 200, response.get_json()
        ids += [item["id"] for item in response.get_json()]
        if len(ids) >= int(response.headers["Total"]):
            return ids
        page += 1


def _contacts(api, n, start=0):
    return [api.post("/api/contacts", data={"msisdn": f"+2526623{start + i:05d}",
                                            "metadata[gender]": "f" if i % 2 == 0 else "m"}).get_json()
            for i in range(n)]


def _event(api, operation_id, event):
    return api.post(f"/api/batch_operations/{operation_id}/batch_operation_events", data={"event": event})


def test_population_preview_queue_results_and_requeue(api, run_jobs):
    contacts = _contacts(api, 4)
    callout = api.post("/api/callouts").get_json()
    created = api.post(f"/api/callouts/{callout['id']}/batch_operations", data={"type": "BatchOperation::CalloutPopulation"})
    assert created.status_code == 201
    operation = created.get_json()
    assert operation["status"] == "preview" and operation["parameters"] == {} and operation["callout_id"] == callout["id"]
    assert operation["type"] == "BatchOperation::CalloutPopulation"
    path = f"/api/batch_operations/{operation['id']}"
    assert api.get(f"{path}/preview/contacts").headers["Total"] == "4"
    assert api.patch(path, data={"parameters[contact_filter_params][metadata][gender]": "f"}).status_code == 204
    assert api.get(path).get_json()["parameters"] == {"contact_filter_params": {"metadata": {"gender": "f"}}}
    women = [c["id"] for c in contacts[::2]]
    assert _ids(api, f"{path}/preview/contacts") == women
    queued = _event(api, operation["id"], "queue")
    assert queued.status_code == 201 and queued.get_json()["status"] == "queued"
    assert _event(api, operation["id"], "queue").status_code == 422
    run_jobs()
    assert api.get(path).get_json()["status"] == "finished"
    assert _ids(api, f"{path}/contacts") == women
    participations = api.get(f"{path}/callout_participations").get_json()
    assert [p["callout_population_id"] for p in participations] == [operation["id"]] * 2
    assert _ids(api, f"/api/callouts/{callout['id']}/contacts") == women
    # a run delivered twice adds nothing twice
    assert jobs.run_batch_operation(operation["id"]) == "skipped"
    # remove one participant, requeue: only she comes back (a population inserts in no particular order)
    [first] = [p for p in participations if p["contact_id"] == women[0]]
    assert api.delete(f"/api/callout_participations/{first['id']}").status_code == 204
    assert _ids(api, f"{path}/preview/contacts") == [women[0]]
    assert _event(api, operation["id"], "requeue").get_json()["status"] == "queued"
    run_jobs()
    assert _ids(api, f"/api/callouts/{callout['id']}/contacts") == women
    assert api.get(f"/api/callouts/{callout['id']}/callout_participations").headers["Total"] == "2"
    assert api.get(f"{path}/preview/contacts").headers["Total"] == "0"
    refused = api.delete(path)
    assert refused.status_code == 422
    assert api.delete(f"/api/callouts/{callout['id']}").status_code == 422


def test_bad_types_and_parameters_are_422_naming_the_parameter(api):
    callout = api.post("/api/callouts").get_json()
    base = f"/api/callouts/{callout['id']}/batch_operations"
    assert api.post("/api/batch_operations", data={}).get_json() == {"errors": {"type": ["can't be blank"]}}
    assert api.post("/api/batch_operations", data={"type": "BatchOperation::Nope"}).get_json() == {
        "errors": {"type": ["is not included in the list"]}}
    typo = api.post(base, data={"type": "BatchOperation::CalloutPopulation",
                                "parameters[contact_filter_params][gender]": "f"})
    assert typo.status_code == 422
    assert typo.get_json() == {"errors": {"contact_filter_params[gender]": ["is not a valid filter"]}}
    unknown = api.post(base, data={"type": "BatchOperation::CalloutPopulation", "parameters[limit]": "1"})
    assert unknown.get_json() == {"errors": {"limit": ["is not a known parameter"]}}
    assert api.post("/api/batch_operations", data={"type": "BatchOperation::CalloutPopulation"}).get_json() == {
        "errors": {"callout": ["must exist"]}}
    no_params = api.post("/api/batch_operations", data={"type": "BatchOperation::PhoneCallCreate"})
    assert no_params.status_code == 422
    assert no_params.get_json()["errors"]["remote_request_params"] == ["can't be blank"]
    bad_limit = api.post("/api/batch_operations", data={"type": "BatchOperation::PhoneCallQueue",
                                                        "parameters[limit]": "many",
                                                        "parameters[skip_validate_preview_presence]": "true"})
    assert bad_limit.get_json() == {"errors": {"limit": ["is not a number"]}}
    empty = api.post("/api/batch_operations", data={"type": "BatchOperation::PhoneCallQueue"})
    assert empty.get_json() == {"errors": {"preview": ["can't be blank"]}}
    operation = api.post(base, data={"type": "BatchOperation::CalloutPopulation"}).get_json()
    assert api.patch(f"/api/batch_operations/{operation['id']}",
                     data={"type": "BatchOperation::PhoneCallQueue"}).status_code == 422
    assert api.get("/api/batch_operations").headers["Total"] == "1"


def test_previews_and_results_that_do_not_apply_are_404(api, other_api):
    callout = api.post("/api/callouts").get_json()
    operation = api.post(f"/api/callouts/{callout['id']}/batch_operations",
                         data={"type": "BatchOperation::CalloutPopulation"}).get_json()
    path = f"/api/batch_operations/{operation['id']}"
    assert api.get(f"{path}/preview/phone_calls").status_code == 404
    assert api.get(f"{path}/preview/callout_participations").status_code == 404
    assert api.get(f"{path}/phone_calls").status_code == 404
    for suffix in ["", "/preview/contacts", "/contacts", "/callout_participations"]:
        assert other_api.get(f"{path}{suffix}").status_code == 404
    assert _event(other_api, operation["id"], "queue").status_code == 404
    assert other_api.get("/api/batch_operations").headers["Total"] == "0"


@pytest.fixture
def two_callouts(calling_api, run_jobs):
    """Callout 1 initialized with 3 participants, callout 2 running with 3 others."""
    contacts = _contacts(calling_api, 6)
    callouts = []
    for index, chunk in enumerate([contacts[:3], contacts[3:]]):
        callout = calling_api.post("/api/callouts").get_json()
        for contact in chunk:
            calling_api.post(f"/api/callouts/{callout['id']}/callout_participations", data={"contact_id": contact["id"]})
        if index == 1:
            calling_api.post(f"/api/callouts/{callout['id']}/callout_events", data={"event": "start"})
        callouts.append(callout)
    return callouts


def test_phone_call_create_queue_and_fetch_in_bulk(calling_api, two_callouts, provider, run_jobs):
    api = calling_api
    _, running = two_callouts
    create = api.post("/api/batch_operations", data={"type": "BatchOperation::PhoneCallCreate", **DEMO})
    assert create.status_code == 201
    create = create.get_json()
    path = f"/api/batch_operations/{create['id']}"
    assert api.get(f"{path}/preview/callout_participations").headers["Total"] == "6"
    assert api.patch(path, data={**DEMO, "parameters[callout_filter_params][status]": "running"}).status_code == 204
    running_participations = _ids(api, f"/api/callouts/{running['id']}/callout_participations")
    assert _ids(api, f"{path}/preview/callout_participations") == running_participations
    assert len(_ids(api, f"{path}/preview/contacts")) == 3
    _event(api, create["id"], "queue")
    run_jobs()
    assert api.get(path).get_json()["status"] == "finished"
    calls = api.get(f"{path}/phone_calls").get_json()
    assert [c["callout_participation_id"] for c in calls] == running_participations
    assert {c["create_batch_operation_id"] for c in calls} == {create["id"]}
    assert {c["status"] for c in calls} == {"created"}
    assert calls[0]["remote_request_params"] == {"from": "1234", "url": "https://demo.twilio.com/docs/voice.xml",
                                                 "method": "GET"}
    # requeue: nothing twice
    _event(api, create["id"], "requeue")
    run_jobs()
    assert api.get("/api/phone_calls").headers["Total"] == "3"

    queue = api.post("/api/batch_operations", data={
        "type": "BatchOperation::PhoneCallQueue", "parameters[callout_filter_params][status]": "running",
        "parameters[phone_call_filter_params][status]": "created", "parameters[limit]": "2"}).get_json()
    qpath = f"/api/batch_operations/{queue['id']}"
    preview = _ids(api, f"{qpath}/preview/phone_calls")
    assert preview == [c["id"] for c in calls[:2]]
    _event(api, queue["id"], "queue")
    run_jobs()
    assert _ids(api, f"{qpath}/phone_calls") == preview
    dialed = api.get(f"{qpath}/phone_calls").get_json()
    assert {c["status"] for c in dialed} == {"remotely_queued"} and {c["queue_batch_operation_id"] for c in dialed} == {queue["id"]}
    assert len(provider.created_calls) == 2

    fetch = api.post("/api/batch_operations", data={
        "type": "BatchOperation::PhoneCallQueueRemoteFetch",
        "parameters[phone_call_filter_params][status]": "remotely_queued,in_progress",
        "parameters[limit]": "1"}).get_json()
    fpath = f"/api/batch_operations/{fetch['id']}"
    assert _ids(api, f"{fpath}/preview/phone_calls") == [preview[0]]
    provider.set_status(dialed[0]["remote_call_id"], "completed", duration=9)
    _event(api, fetch["id"], "queue")
    run_jobs()
    [fetched] = api.get(f"{fpath}/phone_calls").get_json()
    assert fetched["id"] == preview[0] and fetched["status"] == "completed" and fetched["duration"] == 9
    assert fetched["queue_remote_fetch_batch_operation_id"] == fetch["id"]
    assert api.get(f"/api/callouts/{running['id']}/batch_operations").headers["Total"] == "0"
    assert api.get("/api/batch_operations?q[type]=BatchOperation::PhoneCallQueue").headers["Total"] == "1"
    assert api.get("/api/batch_operations?q[status]=finished").headers["Total"] == "3"
    assert api.get("/api/batch_operations?q[parameters][limit]=1").headers["Total"] == "1"


def test_queue_takes_one_call_per_participation(calling_api, two_callouts, run_jobs):
    api = calling_api
    for _ in range(2):
        op = api.post("/api/batch_operations", data={"type": "BatchOperation::PhoneCallCreate", **DEMO}).get_json()
        _event(api, op["id"], "queue")
        run_jobs()
    assert api.get("/api/phone_calls").headers["Total"] == "12"
    queue = api.post("/api/batch_operations", data={"type": "BatchOperation::PhoneCallQueue"}).get_json()
    preview = _ids(api, f"/api/batch_operations/{queue['id']}/preview/phone_calls")
    assert len(preview) == 6
    _event(api, queue["id"], "queue")
    run_jobs()
    assert sorted(_ids(api, f"/api/batch_operations/{queue['id']}/phone_calls")) == sorted(preview)


@pytest.mark.parametrize("kind,params", [
    ("population", {"parameters[contact_filter_params][metadata][gender]": "m"}),
    ("create", {"parameters[callout_participation_filter_params][has_phone_calls]": "false", "parameters[limit]": "4"}),
    ("queue", {"parameters[phone_call_filter_params][status]": "created", "parameters[limit]": "3"}),
    ("fetch", {"parameters[callout_filter_params][status]": "running", "parameters[limit]": "2"}),
])
def test_preview_equals_run(calling_api, two_callouts, run_jobs, kind, params):
    api = calling_api
    initialized, running = two_callouts
    _contacts(api, 5, start=100)
    if kind in ("queue", "fetch"):
        op = api.post("/api/batch_operations", data={"type": "BatchOperation::PhoneCallCreate", **DEMO}).get_json()
        _event(api, op["id"], "queue")
        run_jobs()
    if kind == "fetch":
        op = api.post("/api/batch_operations", data={"type": "BatchOperation::PhoneCallQueue"}).get_json()
        _event(api, op["id"], "queue")
        run_jobs()
    data = {
        "population": {"type": "BatchOperation::CalloutPopulation"},
        "create": {"type": "BatchOperation::PhoneCallCreate", **DEMO},
        "queue": {"type": "BatchOperation::PhoneCallQueue"},
        "fetch": {"type": "BatchOperation::PhoneCallQueueRemoteFetch"},
    }[kind]
    created = api.post(f"/api/callouts/{initialized['id']}/batch_operations" if kind == "population"
                       else "/api/batch_operations", data={**data, **params})
    assert created.status_code == 201, created.get_json()
    operation = created.get_json()
    path = f"/api/batch_operations/{operation['id']}"
    preview_kind = {"population": "contacts", "create": "callout_participations"}.get(kind, "phone_calls")
    result_kind = {"population": "contacts", "create": "phone_calls"}.get(kind, "phone_calls")
    preview = _ids(api, f"{path}/preview/{preview_kind}")
    assert preview
    _event(api, operation["id"], "queue")
    run_jobs()
    results = api.get(f"{path}/{result_kind}?per_page=100").get_json()
    acted_on = [r["callout_participation_id"] for r in results] if kind == "create" else [r["id"] for r in results]
    assert sorted(acted_on) == sorted(preview)


def test_max_per_period_caps_what_a_queue_takes(calling_api, two_callouts, run_jobs):
    api = calling_api
    op = api.post("/api/batch_operations", data={"type": "BatchOperation::PhoneCallCreate", **DEMO}).get_json()
    _event(api, op["id"], "queue")
    run_jobs()
    first = api.post("/api/batch_operations", data={"type": "BatchOperation::PhoneCallQueue", "parameters[limit]": "2"}).get_json()
    _event(api, first["id"], "queue")
    run_jobs()
    capped = api.post("/api/batch_operations", data={
        "type": "BatchOperation::PhoneCallQueue", "parameters[max_per_period]": "3",
        "parameters[max_per_period_hours]": "24", "parameters[max_per_period_statuses]": "remotely_queued"})
    assert capped.status_code == 201
    assert api.get(f"/api/batch_operations/{capped.get_json()['id']}/preview/phone_calls").headers["Total"] == "1"
    bad = api.post("/api/batch_operations", data={
        "type": "BatchOperation::PhoneCallQueue", "parameters[max_per_period_timestamp_attribute]": "deleted_at",
        "parameters[skip_validate_preview_presence]": "1"})
    assert bad.get_json() == {"errors": {"max_per_period_timestamp_attribute": ["is not included in the list"]}}


def test_phone_call_create_over_participations_already_called_by_hand_is_created(calling_api, two_callouts):
    api = calling_api
    _, running = two_callouts
    participations = _ids(api, f"/api/callouts/{running['id']}/callout_participations")
    for participation in participations:  # each called once already, by hand
        assert api.post(f"/api/callout_participations/{participation}/phone_calls",
                        data={"remote_request_params[url]": DEMO["parameters[remote_request_params][url]"]}
                        ).status_code == 201
    create = api.post("/api/batch_operations", data={
        "type": "BatchOperation::PhoneCallCreate", **DEMO, "parameters[callout_filter_params][status]": "running"})
    assert create.status_code == 201, create.get_json()
    path = f"/api/batch_operations/{create.get_json()['id']}/preview/callout_participations"
    assert _ids(api, path) == participations
