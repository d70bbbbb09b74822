"""Many agencies on one server: six accounts, each with its own provider account, dial at the same time on
one dialer, while a seventh account's batch operation runs on the worker (issue 11)."""
from __future__ import annotations

import threading
import time

from rq import SimpleWorker
from sqlalchemy import text

from tests.integration.conftest import allow_provider_url, new_account_api
from tests.support.fake_provider import FakeProvider

DEMO = {"parameters[remote_request_params][from]": "1234",
        "parameters[remote_request_params][url]": "https://demo.twilio.com/docs/voice.xml"}
ACCOUNTS = {f"AC{n:032d}": f"auth-token-{n}" for n in range(1, 7)}
CALLS, RATE = 20, 5  # each account dials for 4 s at least


def _operation(api, callout_id: int, data: dict) -> int:
    operation = api.post(f"/api/callouts/{callout_id}/batch_operations", data=data).get_json()
    api.post(f"/api/batch_operations/{operation['id']}/batch_operation_events", data={"event": "queue"})
    return operation["id"]


def test_six_accounts_dial_at_once_while_another_accounts_batch_operation_runs(app, admin, deps, settings,
                                                                                monkeypatch):
    worker = SimpleWorker([deps.queue], connection=deps.redis)
    with FakeProvider(ACCOUNTS, seed=7) as provider:
        allow_provider_url(monkeypatch, provider.url, settings, deps.settings)
        callouts = []
        for n, (sid, token) in enumerate(ACCOUNTS.items()):
            api = new_account_api(app, admin, platform_provider_name="somleng", somleng_account_sid=sid,
                                  somleng_auth_token=token, somleng_api_base_url=provider.url,
                                  calls_per_second=RATE)
            callout = api.post("/api/callouts").get_json()
            for i in range(CALLS):
                contact = api.post("/api/contacts", data={"msisdn": f"+25266{n}{i:05d}"}).get_json()
                api.post(f"/api/callouts/{callout['id']}/callout_participations", data={"contact_id": contact["id"]})
            _operation(api, callout["id"], {"type": "BatchOperation::PhoneCallCreate", **DEMO})
            callouts.append((api, callout["id"]))
        quiet = new_account_api(app, admin)
        quiet.post("/api/contacts", data={"msisdn": "+252662345678"})
        quiet_callout = quiet.post("/api/callouts").get_json()["id"]
        worker.work(burst=True)  # the calls are created

        stopping = threading.Event()
        dialer = threading.Thread(target=deps.dispatcher().serve, args=(stopping,))
        dialer.start()
        try:
            for api, callout_id in callouts:
                _operation(api, callout_id, {"type": "BatchOperation::PhoneCallQueue"})
            population = _operation(quiet, quiet_callout, {"type": "BatchOperation::CalloutPopulation"})
            worker.work(burst=True)  # the six queue operations, then the population: no job waits for dialing
            dialed_when_the_population_ended = len(provider.created_calls)
            deadline = time.monotonic() + 120
            while len(provider.created_calls) < 6 * CALLS and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            stopping.set()
            dialer.join()
        creates = list(provider.created_calls)

    assert quiet.get(f"/api/batch_operations/{population}").get_json()["status"] == "finished"
    assert dialed_when_the_population_ended < 6 * CALLS  # it ran while the six were dialing
    assert len(creates) == 6 * CALLS and all(create["status_code"] == 201 for create in creates)
    periods = {}
    for create in creates:
        first, last = periods.get(create["account_sid"], (create["at"], create["at"]))
        periods[create["account_sid"]] = (min(first, create["at"]), max(last, create["at"]))
    assert set(periods) == set(ACCOUNTS)
    # every account's dialing period overlaps every other's: none waited for another to finish
    assert max(first for first, _last in periods.values()) < min(last for _first, last in periods.values())
    with deps.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM phone_calls WHERE status = 'remotely_queued'")).scalar() == 120
