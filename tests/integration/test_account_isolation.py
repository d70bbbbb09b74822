"""Two accounts cannot see or touch each other's records through any route.

Account A makes one record of every resource (a phone call dialed on the fake provider, with the event its
webhook recorded, included); account B then tries every route of the app under /api/ that takes an id, with
A's ids, every method the route has and a body A could send, and every list, with filters naming A's records.

A new resource: make one in `a_records`, give its id argument a row in ID_OF (a route whose argument has no
row fails the test, it is not skipped), a row in BODIES for each of its write routes, and its list's last
path segment a row in KINDS.
"""
import csv
import io

import pytest

from tests.integration.conftest import PROVIDER_SID, allow_provider_url, new_account_api, signed_webhook
from tests.integration.test_batch_operations_api import DEMO as BATCH_DEMO
from tests.integration.test_phone_calls_api import DEMO
from tests.support.fake_provider import FakeProvider

MSISDN, WAITING_MSISDN = "+252662345678", "+252662345679"
POPULATION = "BatchOperation::CalloutPopulation"
CREATE = "BatchOperation::PhoneCallCreate"
QUEUE = "BatchOperation::PhoneCallQueue"
FETCH = "BatchOperation::PhoneCallQueueRemoteFetch"
OTHER_SID, OTHER_TOKEN = "AC" + "2" * 32, "other-auth-token"  # B's provider account, where B has one
NEVER_USED = 2**31 - 1  # an id no record has: what B gets for A's ids must be what it gets for this one

# Which of A's records (keys of `a_records`) each id argument of a route is tried with: all of them.
ID_OF = {
    "account_id": ["account"],
    "token_id": ["token"],
    "contact_id": ["contact", "waiting_contact"],
    "callout_id": ["callout"],
    "participation_id": ["participation", "waiting_participation"],
    "phone_call_id": ["created_call", "dialed_call"],
    "event_id": ["event"],
    "operation_id": ["population", "create", "queue", "fetch"],
    "contact_import_id": ["contact_import"],
}


def _events(*names):
    return lambda a: [{"event": name} for name in names]


def _metadata(**fields):
    return lambda a: [{"metadata[isolation]": "changed", **fields}]


# The bodies each write route is tried with: valid ones (the same request with an id that does not exist is
# a 404, so the body passed validation and only the lookup stands between B and A's record).
BODIES = {
    ("/api/accounts/<int:account_id>", "PATCH"): _metadata(calls_per_second="1"),
    ("/api/contacts/<int:contact_id>", "PATCH"): _metadata(msisdn="+252662345699"),
    ("/api/callouts/<int:callout_id>", "PATCH"): _metadata(call_flow_logic="CallFlowLogic::PlayMessage"),
    ("/api/callouts/<int:callout_id>/callout_events", "POST"): _events("start", "pause", "resume", "stop"),
    ("/api/callouts/<int:callout_id>/callout_participations", "POST"): lambda a: [{"contact_id": a["contact"]}],
    ("/api/callouts/<int:callout_id>/batch_operations", "POST"): lambda a: [
        {"type": POPULATION, "parameters[contact_filter_params][msisdn]": MSISDN}],
    ("/api/callout_participations/<int:participation_id>", "PATCH"): _metadata(msisdn="+252662345699"),
    ("/api/callout_participations/<int:participation_id>/phone_calls", "POST"): lambda a: [DEMO],
    ("/api/phone_calls/<int:phone_call_id>", "PATCH"): _metadata(msisdn="+252662345699"),
    ("/api/phone_calls/<int:phone_call_id>/phone_call_events", "POST"): _events("queue", "queue_remote_fetch"),
    ("/api/remote_phone_call_events/<int:event_id>", "PATCH"): _metadata(),
    ("/api/batch_operations/<int:operation_id>", "PATCH"): _metadata(**{"parameters[limit]": "1"}),
    ("/api/batch_operations/<int:operation_id>/batch_operation_events", "POST"): _events("queue", "requeue"),
}
EXPECTED = {"/api/accounts/<int:account_id>": 403}  # super admins only: refused before any lookup, OPTIONS too

# The resource a list route shows, by the last segment of its path.
KINDS = {name: name for name in (
    "contacts", "callouts", "callout_participations", "phone_calls", "remote_phone_call_events",
    "batch_operations", "access_tokens", "contact_imports")}
NOT_LISTS = {"/api/docs", "/api/openapi.json", "/api/account", "/api/accounts",
             "/api/contacts.csv",  # an export, not a JSON list: tried on its own
             "/api/account/statistics"}  # one document, in the snapshot


def _send(api, method: str, path: str, body=None):
    return api.client.open(path, method=method, data=body, headers=api._headers())


def _answer(response):
    return response.status_code, response.get_json(silent=True), response.headers.get("Total")


def _id_routes(app):
    return [r for r in sorted(app.url_map.iter_rules(), key=lambda r: r.rule)
            if r.rule.startswith("/api/") and r.arguments]


def _list_routes(app):
    return [r for r in sorted(app.url_map.iter_rules(), key=lambda r: r.rule)
            if r.rule.startswith("/api/") and not r.arguments and "GET" in r.methods and r.rule not in NOT_LISTS]


WRITES = {"POST", "PATCH", "PUT"}


def _untried(app) -> list[str]:
    """What the table has no row for: an id argument with no record to try, a write with no body."""
    return [f"<{argument}> of {rule.rule}: add a record to ID_OF" for rule in _id_routes(app)
            for argument in sorted(rule.arguments - ID_OF.keys())] + [
        f"{method} {rule.rule}: add a body to BODIES" for rule in _id_routes(app)
        for method in sorted(rule.methods & WRITES) if (rule.rule, method) not in BODIES]


def _paths(rule, a):
    """The paths of `rule` with every combination of A's records its arguments are tried with."""
    combos = [{}]
    for argument in sorted(rule.arguments):
        combos = [{**combo, argument: a[key]} for combo in combos for key in ID_OF[argument]]
    return [rule.build(combo, append_unknown=False)[1] for combo in combos]


def _at_rest(path, answer):
    """An answer without what changes with the clock alone: statistics' minutes and estimate."""
    status, body, total = answer
    if path.endswith("/statistics") and isinstance(body, dict):
        body = {key: value for key, value in body.items() if key not in ("calls_per_minute", "estimate")}
    return status, body, total


def _snapshot(app, api, a):
    """Everything A reads: every GET route, with each of its records."""
    paths = [p for r in _id_routes(app) if "GET" in r.methods for p in _paths(r, a)]
    paths += [r.rule for r in _list_routes(app)] + ["/api/account", "/api/account/statistics"]
    return {path: _at_rest(path, _answer(api.get(path))) for path in paths}


@pytest.fixture
def a_records(calling_api, run_jobs):
    """One record of every resource, owned by A (calling_api): a dict of their ids, and A's ids by kind."""
    api = calling_api
    contact = api.post("/api/contacts", data={"msisdn": MSISDN, "metadata[name]": "A"}).get_json()
    callout = api.post("/api/callouts").get_json()
    participation = api.post(f"/api/callouts/{callout['id']}/callout_participations",
                             data={"contact_id": contact["id"]}).get_json()
    assert api.post(f"/api/callouts/{callout['id']}/callout_events", data={"event": "start"}).status_code == 201
    dialed_call = api.post(f"/api/callout_participations/{participation['id']}/phone_calls", data=DEMO).get_json()
    # a second contact, whose call stays created (a participation has one call in flight at most)
    waiting_contact = api.post("/api/contacts", data={"msisdn": WAITING_MSISDN}).get_json()
    waiting = api.post(f"/api/callouts/{callout['id']}/callout_participations",
                       data={"contact_id": waiting_contact["id"]}).get_json()
    created_call = api.post(f"/api/callout_participations/{waiting['id']}/phone_calls", data=DEMO).get_json()
    assert api.post(f"/api/phone_calls/{dialed_call['id']}/phone_call_events",
                    data={"event": "queue"}).status_code == 201
    run_jobs()
    dialed_call = api.get(f"/api/phone_calls/{dialed_call['id']}").get_json()
    assert dialed_call["status"] == "remotely_queued"
    ringing = {"CallSid": dialed_call["remote_call_id"], "AccountSid": PROVIDER_SID, "From": "1234",
               "To": MSISDN, "CallStatus": "ringing", "Direction": "outbound-api", "ApiVersion": "2010-04-01"}
    webhook = signed_webhook(api.client, ringing)
    assert webhook.status_code == 201
    operations = {
        "population": api.post(f"/api/callouts/{callout['id']}/batch_operations", data={
            "type": POPULATION, "parameters[contact_filter_params][msisdn]": MSISDN}),
        # its preview shows both participations, but the check on creation finds none: they have calls made
        # by hand, and with no id yet the operation's own calls are compared as NULL
        "create": api.post("/api/batch_operations", data={
            "type": CREATE, "parameters[skip_validate_preview_presence]": "true", **BATCH_DEMO}),
        "queue": api.post("/api/batch_operations", data={
            "type": QUEUE, "parameters[phone_call_filter_params][status]": "created"}),
        "fetch": api.post("/api/batch_operations", data={
            "type": FETCH, "parameters[phone_call_filter_params][status]": "in_progress"}),
    }
    assert [o.status_code for o in operations.values()] == [201] * 4, [o.get_json() for o in operations.values()]
    contact_import = api.post("/api/contact_imports", data=f"msisdn,name\n{MSISDN},A\n", content_type="text/csv")
    assert contact_import.status_code == 201, contact_import.get_json()
    run_jobs()
    ids = {
        "account": api.get("/api/account").get_json()["id"],
        "token": api.get("/api/access_tokens").get_json()[0]["id"],
        "contact": contact["id"], "waiting_contact": waiting_contact["id"], "callout": callout["id"],
        "participation": participation["id"], "waiting_participation": waiting["id"],
        "created_call": created_call["id"], "dialed_call": dialed_call["id"],
        "event": int(webhook.headers["Location"].rsplit("/", 1)[1]),
        **{name: response.get_json()["id"] for name, response in operations.items()},
        "remote_call_id": dialed_call["remote_call_id"], "contact_import": contact_import.get_json()["id"],
    }
    ids["owned"] = {
        "contacts": {ids["contact"], ids["waiting_contact"]}, "callouts": {ids["callout"]},
        "callout_participations": {ids["participation"], ids["waiting_participation"]},
        "phone_calls": {ids["created_call"], ids["dialed_call"]}, "remote_phone_call_events": {ids["event"]},
        "batch_operations": {ids[name] for name in operations}, "access_tokens": {ids["token"]},
        "contact_imports": {ids["contact_import"]},
    }
    return ids


def test_every_route_with_an_id_answers_another_accounts_id_as_one_that_does_not_exist(
        app, calling_api, other_api, a_records):
    a = a_records
    assert _untried(app) == []
    before = _snapshot(app, calling_api, a)
    tried = set()
    for rule in _id_routes(app):
        paths = _paths(rule, a)
        missing = rule.build({arg: NEVER_USED for arg in rule.arguments}, append_unknown=False)[1]
        for method in sorted(rule.methods):
            bodies = BODIES[(rule.rule, method)](a) if method in WRITES else [None]
            expected = EXPECTED.get(rule.rule, 200 if method == "OPTIONS" else 404)
            for body in bodies:
                nothing = _answer(_send(other_api, method, missing, body))
                assert nothing[0] == expected, (method, missing, body, nothing)
                for path in paths:
                    answer = _answer(_send(other_api, method, path, body))
                    assert answer == nothing, (method, path, body, answer)
                    tried.add((rule.rule, method))
    every = {(r.rule, m) for r in _id_routes(app) for m in r.methods}
    assert tried == every
    # A's records are as they were, and each route with an id finds one of them for A
    assert _snapshot(app, calling_api, a) == before
    for rule in _id_routes(app):
        if "GET" in rule.methods and rule.rule not in EXPECTED:
            assert any(before[path][0] == 200 for path in _paths(rule, a)), rule.rule


def test_a_route_added_with_an_id_the_table_does_not_know_fails_the_isolation_test(app):
    assert _untried(app) == []
    app.add_url_rule("/api/widgets/<int:widget_id>", "widget", lambda widget_id: "", methods=["GET", "POST"])
    app.add_url_rule("/api/contacts/<int:contact_id>/widgets", "widgets", lambda contact_id: "", methods=["PUT"])
    assert _untried(app) == ["<widget_id> of /api/widgets/<int:widget_id>: add a record to ID_OF",
                             "PUT /api/contacts/<int:contact_id>/widgets: add a body to BODIES",
                             "POST /api/widgets/<int:widget_id>: add a body to BODIES"]


@pytest.fixture
def other_provider(settings, deps, monkeypatch):
    """B's own provider account, on a fake provider of its own (a provider account belongs to one tenant)."""
    with FakeProvider({OTHER_SID: OTHER_TOKEN}, seed=8) as server:
        allow_provider_url(monkeypatch, server.url, settings, deps.settings)
        yield server


def _filters_naming(a):
    """Queries that find A's records by their ids, and by values B's records may share."""
    by_id = [f"?q[contact_id]={a['contact']}", f"?q[callout_id]={a['callout']}",
             f"?q[callout_participation_id]={a['participation']}", f"?q[phone_call_id]={a['dialed_call']}",
             f"?q[remote_call_id]={a['remote_call_id']}"]
    by_value = ["", f"?q[msisdn]={MSISDN[1:]}", "?q[status]=created", "?q[status]=in_progress",
                "?q[metadata][name]=A"]
    return by_id, by_value


def _shown(response, path, query) -> list:
    assert response.status_code == 200, (path, query, response.get_json())
    shown = [item["id"] for item in response.get_json()]
    assert response.headers["Total"] == str(len(shown)), (path, query)
    return shown


def test_lists_show_another_account_nothing_of_ones_records(app, admin, other_provider, calling_api, a_records,
                                                            run_jobs):
    a = a_records
    before = _snapshot(app, calling_api, a)
    b = new_account_api(app, admin, platform_provider_name="somleng", somleng_account_sid=OTHER_SID,
                        somleng_auth_token=OTHER_TOKEN, somleng_api_base_url=other_provider.url,
                        calls_per_second=50)
    b_token = b.get("/api/access_tokens").get_json()[0]["id"]
    by_id, by_value = _filters_naming(a)
    # B has nothing yet: every list, with every filter that shows A some of its records, shows B none of them
    finding = set()
    for rule in _list_routes(app):
        for query in by_id + by_value:
            path = rule.rule + query
            mine, theirs = calling_api.get(path), b.get(path)
            if mine.status_code == 422:  # a filter this list does not have
                assert _answer(theirs) == _answer(mine), path
                continue
            own = [b_token] if rule.rule == "/api/access_tokens" and "q[" not in query else []
            assert _shown(theirs, rule.rule, query) == own
            if _shown(mine, rule.rule, query):
                finding.add(query)
    assert finding == set(by_id + by_value)  # no filter is tried that finds nothing anyway

    # B makes the same records as A (the same msisdn is free in another account) and runs an operation of each
    # type whose filters match A's records as well as its own
    contact = b.post("/api/contacts", data={"msisdn": MSISDN, "metadata[name]": "A"})
    assert contact.status_code == 201
    contact = contact.get_json()
    callout = b.post("/api/callouts").get_json()
    participation = b.post(f"/api/callouts/{callout['id']}/callout_participations",
                           data={"contact_id": contact["id"]}).get_json()
    assert b.post(f"/api/callouts/{callout['id']}/callout_events", data={"event": "start"}).status_code == 201
    call = b.post(f"/api/callout_participations/{participation['id']}/phone_calls", data=DEMO).get_json()
    empty_callout = b.post("/api/callouts").get_json()["id"]
    population = f"/api/callouts/{empty_callout}/batch_operations"
    operations = [
        b.post(population, data={"type": POPULATION, "parameters[contact_filter_params][msisdn]": MSISDN[1:]}),
        b.post(population, data={"type": POPULATION, "parameters[contact_filter_params][msisdn]": WAITING_MSISDN[1:]}),
        b.post("/api/batch_operations", data={
            "type": CREATE, "parameters[skip_validate_preview_presence]": "true", **BATCH_DEMO}),
        b.post("/api/batch_operations", data={
            "type": QUEUE, "parameters[phone_call_filter_params][status]": "created"}),
        b.post("/api/batch_operations", data={
            "type": FETCH, "parameters[phone_call_filter_params][status]": "remotely_queued,in_progress",
            "parameters[skip_validate_preview_presence]": "true"}),
    ]
    assert [o.status_code for o in operations] == [201] * 5, [o.get_json() for o in operations]
    operations = [o.get_json()["id"] for o in operations]
    previews = [f"/api/batch_operations/{operations[i]}/preview/{kind}" for i, kind in [
        (0, "contacts"), (1, "contacts"), (3, "phone_calls")]]
    assert [_shown(b.get(path), path, "") for path in previews] == [[contact["id"]], [], [call["id"]]]
    for operation in operations:
        assert b.post(f"/api/batch_operations/{operation}/batch_operation_events",
                      data={"event": "queue"}).status_code == 201
    run_jobs()
    assert b.get(f"/api/phone_calls/{call['id']}").get_json()["status"] == "remotely_queued"
    results = [f"/api/batch_operations/{operations[i]}/{kind}" for i, kind in [
        (0, "contacts"), (1, "contacts"), (3, "phone_calls")]]
    shown = [_shown(b.get(path), path, "") for path in results]
    assert shown[:2] == [[contact["id"]], []] and call["id"] in shown[2]  # and the calls B's PhoneCallCreate made

    # every list, nested under B's own records too, previews and results included, shows none of A's records:
    # nothing when it names A's, B's own (which are like A's) otherwise
    b_records = {"account": None, "token": b_token, "contact": contact["id"], "waiting_contact": contact["id"],
                 "callout": callout["id"], "participation": participation["id"],
                 "waiting_participation": participation["id"], "created_call": call["id"], "dialed_call": call["id"],
                 "event": None, "population": operations[0], "create": operations[2], "queue": operations[3],
                 "fetch": operations[4], "contact_import": None}
    b_owned = {kind: {item["id"] for item in b.get(f"/api/{kind}").get_json()} for kind in KINDS}
    assert b_owned["contacts"] == {contact["id"]} and b_owned["callouts"] == {callout["id"], empty_callout}
    assert b_owned["batch_operations"] == set(operations) and b_owned["access_tokens"] == {b_token}
    assert participation["id"] in b_owned["callout_participations"] and call["id"] in b_owned["phone_calls"]
    nested = [r for r in _id_routes(app) if r.rule.rsplit("/", 1)[1] in KINDS and "GET" in r.methods]
    lists = [p for r in nested for p in _paths(r, b_records)] + [r.rule for r in _list_routes(app)]
    for path in lists:
        kind = KINDS[path.rsplit("/", 1)[1]]
        for query in by_id + by_value:
            response = b.get(path + query)
            if response.status_code == 422 or (response.status_code == 404 and "/batch_operations/" in path):
                continue  # a filter this list does not have; a preview or result this type has not
            shown = set(_shown(response, path, query))
            assert not shown & a["owned"][kind], (path, query, shown)
            assert shown <= b_owned[kind], (path, query, shown)
            if query in by_id and not path.startswith("/api/batch_operations/"):  # previews and results have no q
                assert not shown, (path, query, shown)
    for query in by_id + by_value:  # the CSV export, with the same filters as the list
        exported = b.get("/api/contacts.csv" + query)
        if exported.status_code == 422:
            continue
        rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
        assert {int(row["id"]) for row in rows} <= b_owned["contacts"], (query, rows)
    assert _snapshot(app, calling_api, a) == before


def test_ids_of_another_accounts_records_in_a_body_are_answered_as_missing_ones(app, admin, calling_api, a_records,
                                                                               run_jobs):
    a = a_records
    b = new_account_api(app, admin)
    before = _snapshot(app, calling_api, a)
    callout = b.post("/api/callouts").get_json()["id"]
    writes = [  # (path, body naming a record by `id`)
        (f"/api/callouts/{callout}/callout_participations", lambda id: {"contact_id": id}),
        ("/api/batch_operations", lambda id: {"type": CREATE, "callout_id": id, **BATCH_DEMO}),
        ("/api/batch_operations", lambda id: {"type": QUEUE, "callout_id": id}),
        ("/api/access_tokens", lambda id: {"account_sid": id}),
        ("/api/access_tokens", lambda id: {"account_id": id}),
    ]
    for (path, body), key in zip(writes, ["contact", "callout", "callout", "account", "account"]):
        nothing = _answer(b.post(path, data=body(NEVER_USED)))
        assert nothing[0] == 422, (path, nothing)
        assert _answer(b.post(path, data=body(a[key]))) == nothing, path
    # filters of a batch operation naming A's records select nothing, in its preview and when it runs
    skip = {"parameters[skip_validate_preview_presence]": "true"}
    filters = [
        (CREATE, {"parameters[callout_participation_filter_params][callout_id]": a["callout"], **BATCH_DEMO}),
        (CREATE, {"parameters[callout_participation_filter_params][contact_id]": a["contact"], **BATCH_DEMO}),
        (QUEUE, {"parameters[phone_call_filter_params][callout_participation_id]": a["waiting_participation"]}),
        (QUEUE, {"parameters[phone_call_filter_params][contact_id]": a["waiting_contact"]}),
        (FETCH, {"parameters[phone_call_filter_params][remote_call_id]": a["remote_call_id"]}),
        (FETCH, {"parameters[phone_call_filter_params][contact_id]": a["contact"]}),
    ]
    for type_, parameters in filters:
        refused = b.post("/api/batch_operations", data={"type": type_, **parameters})
        assert _answer(refused) == (422, {"errors": {"preview": ["can't be blank"]}}, None), parameters
        operation = b.post("/api/batch_operations", data={"type": type_, **parameters, **skip})
        assert operation.status_code == 201, operation.get_json()
        path = f"/api/batch_operations/{operation.get_json()['id']}"
        for kind in ("contacts", "callout_participations", "phone_calls"):
            assert b.get(f"{path}/preview/{kind}").headers.get("Total") in (None, "0"), (parameters, kind)
        assert b.post(f"{path}/batch_operation_events", data={"event": "queue"}).status_code == 201
    run_jobs()
    for operation in b.get("/api/batch_operations").get_json():
        assert operation["status"] == "finished", operation
        assert b.get(f"/api/batch_operations/{operation['id']}/phone_calls").headers["Total"] == "0"
    totals = {kind: b.get(f"/api/{kind}").headers["Total"] for kind in KINDS}
    assert totals == {**{kind: "0" for kind in KINDS}, "access_tokens": "1", "callouts": "1",
                      "batch_operations": str(len(filters))}
    assert _snapshot(app, calling_api, a) == before


def test_a_webhook_signed_by_another_account_cannot_touch_ones_calls(app, admin, calling_api, a_records):
    a = a_records
    b = new_account_api(app, admin, platform_provider_name="twilio", twilio_account_sid=OTHER_SID,
                        twilio_auth_token=OTHER_TOKEN)
    before = _snapshot(app, calling_api, a)

    def report(call_sid, direction="outbound-api", query="", account_sid=OTHER_SID):
        params = {"CallSid": call_sid, "AccountSid": account_sid, "From": "+85510202103", "To": "1294",
                  "CallStatus": "completed", "CallDuration": "9", "Direction": direction,
                  "ApiVersion": "2010-04-01"}
        return _answer(signed_webhook(b.client, params, token=OTHER_TOKEN, query=query))

    # signed with B's token in the name of A's provider account: not A's signature
    for query in ("", f"phone_call_id={a['dialed_call']}"):
        assert report(a["remote_call_id"], query=query, account_sid=PROVIDER_SID)[0] == 403

    unknown_sid = "CA" + "7" * 32
    unknown = report(unknown_sid)
    assert unknown[0] == 404
    # A's CallSid, A's call in the status callback URL (the created one, not yet dialed, could be adopted), both
    for call_sid, call in [(a["remote_call_id"], None), (unknown_sid, a["created_call"]),
                           (unknown_sid, a["dialed_call"]), (a["remote_call_id"], a["dialed_call"])]:
        query = f"phone_call_id={call}" if call else ""
        assert report(call_sid, query=query) == unknown, (call_sid, query)
        assert report(call_sid, query=f"phone_call_id={NEVER_USED}") == unknown
    # as an inbound call it is B's own new call, whatever it names
    assert report(a["remote_call_id"], "inbound", f"phone_call_id={a['created_call']}")[0] == 201
    [inbound] = b.get("/api/phone_calls").get_json()
    assert inbound["id"] not in a["owned"]["phone_calls"] and inbound["remote_call_id"] == a["remote_call_id"]
    assert _snapshot(app, calling_api, a) == before
