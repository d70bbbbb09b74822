"""Callouts and callout participations through HTTP."""


def _contact(api, msisdn="+252662345678", **metadata):
    data = {"msisdn": msisdn, **{f"metadata[{k}]": v for k, v in metadata.items()}}
    return api.post("/api/contacts", data=data).get_json()


def test_callout_lifecycle(api):
    created = api.post("/api/callouts")
    assert created.status_code == 201
    callout = created.get_json()
    assert callout["status"] == "initialized" and callout["call_flow_logic"] is None
    path = f"/api/callouts/{callout['id']}"
    assert api.patch(path, data={"call_flow_logic": "CallFlowLogic::Application",
                                 "metadata[name]": "my callout"}).status_code == 204
    fetched = api.get(path).get_json()
    assert fetched["call_flow_logic"] == "CallFlowLogic::Application" and fetched["metadata"] == {"name": "my callout"}
    started = api.post(f"{path}/callout_events", data={"event": "start"})
    assert started.status_code == 201 and started.get_json()["status"] == "running"
    assert started.headers["Location"] == path
    again = api.post(f"{path}/callout_events", data={"event": "start"})
    assert again.status_code == 422
    assert again.get_json() == {"errors": {"event": ["is not included in the list"]}}
    for event, status in [("pause", "paused"), ("resume", "running"), ("stop", "stopped"), ("resume", "running")]:
        assert api.post(f"{path}/callout_events", data={"event": event}).get_json()["status"] == status
    assert api.post(f"{path}/callout_events", data={}).status_code == 422
    assert api.get("/api/callouts?q[status]=running").headers["Total"] == "1"
    assert api.get('/api/callouts?q[status]="running"').status_code == 422
    assert api.get("/api/callouts?q[metadata][name]=my+callout").headers["Total"] == "1"
    assert api.get("/api/callouts?q[call_flow_logic]=CallFlowLogic::Application").headers["Total"] == "1"
    assert api.delete(path).status_code == 204


def test_call_flow_logic_must_be_registered(api):
    refused = api.post("/api/callouts", data={"call_flow_logic": "CallFlowLogic::Nope"})
    assert refused.status_code == 422
    assert refused.get_json() == {"errors": {"call_flow_logic": ["is not included in the list"]}}
    assert api.post("/api/callouts", data={"call_flow_logic": "CallFlowLogic::AvfCapom::CapomShort"}).status_code == 201


def test_participations_default_their_msisdn_and_show_the_effective_call_flow_logic(api, other_api):
    contact = _contact(api)
    callout = api.post("/api/callouts", data={"call_flow_logic": "CallFlowLogic::HelloWorld"}).get_json()
    created = api.post(f"/api/callouts/{callout['id']}/callout_participations", data={"contact_id": contact["id"]})
    assert created.status_code == 201
    participation = created.get_json()
    assert participation["msisdn"] == contact["msisdn"] and participation["callout_population_id"] is None
    assert participation["call_flow_logic"] == "CallFlowLogic::HelloWorld"
    assert created.headers["Location"] == f"/api/callout_participations/{participation['id']}"
    duplicate = api.post(f"/api/callouts/{callout['id']}/callout_participations", data={"contact_id": contact["id"]})
    assert duplicate.status_code == 422
    path = f"/api/callout_participations/{participation['id']}"
    assert api.patch(path, data={"call_flow_logic": "CallFlowLogic::Application", "metadata[name]": "p",
                                 "msisdn": "252662345701"}).status_code == 204
    fetched = api.get(path).get_json()
    assert fetched["msisdn"] == "+252662345701" and fetched["call_flow_logic"] == "CallFlowLogic::Application"
    foreign = _contact(other_api)
    refused = api.post(f"/api/callouts/{callout['id']}/callout_participations", data={"contact_id": foreign["id"]})
    assert refused.status_code == 422 and refused.get_json() == {"errors": {"contact": ["must exist"]}}
    assert api.post(f"/api/callouts/{callout['id']}/callout_participations", data={}).status_code == 422
    assert other_api.post(f"/api/callouts/{callout['id']}/callout_participations",
                          data={"contact_id": foreign["id"]}).status_code == 404


def test_participation_routes_and_filters(api):
    alice, bob = _contact(api), _contact(api, "+252662345679")
    callout = api.post("/api/callouts").get_json()
    base = f"/api/callouts/{callout['id']}"
    p1 = api.post(f"{base}/callout_participations", data={"contact_id": alice["id"]}).get_json()
    p2 = api.post(f"{base}/callout_participations", data={"contact_id": bob["id"]}).get_json()
    params = {"remote_request_params[from]": "1234", "remote_request_params[url]": "https://demo.twilio.com/docs/voice.xml"}
    api.post(f"/api/callout_participations/{p1['id']}/phone_calls", data=params)

    def ids(path):
        response = api.get(path)
        assert response.status_code == 200, response.get_json()
        return [item["id"] for item in response.get_json()]

    assert ids(f"{base}/callout_participations") == [p1["id"], p2["id"]]
    assert ids(f"{base}/callout_participations?q[contact_id]={alice['id']}") == [p1["id"]]
    assert ids(f"/api/contacts/{bob['id']}/callout_participations") == [p2["id"]]
    assert ids(f"{base}/contacts") == [alice["id"], bob["id"]]
    assert ids(f"/api/contacts/{alice['id']}/callouts") == [callout["id"]]
    assert ids("/api/callout_participations?q[has_phone_calls]=true") == [p1["id"]]
    assert ids("/api/callout_participations?q[has_phone_calls]=false") == [p2["id"]]
    assert ids("/api/callout_participations?q[last_phone_call_attempt]=created") == [p1["id"]]
    assert ids("/api/callout_participations?q[last_phone_call_attempt]=failed,errored") == []
    assert ids("/api/callout_participations?q[no_phone_calls_or_last_attempt]=failed,errored") == [p2["id"]]
    assert ids("/api/callout_participations?q[msisdn]=252662345679") == [p2["id"]]
    refused = api.delete(f"/api/callout_participations/{p1['id']}")
    assert refused.get_json() == {"errors": {"base": ["Cannot delete record because dependent phone calls exist"]}}
    assert api.delete(f"/api/contacts/{alice['id']}").status_code == 422
    assert api.delete(f"/api/callouts/{callout['id']}").status_code == 422
    assert api.delete(f"/api/callout_participations/{p2['id']}").status_code == 204
