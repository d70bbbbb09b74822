"""A parent deleted while a child is created, in parallel: one of the two wins, the other gets a clear 4xx."""
import threading

import pytest
from sqlalchemy import text

from tests.integration.conftest import Api
from tests.integration.test_phone_calls_api import DEMO

ROUNDS = 20


def _race(api: Api, delete_path: str, create_path: str, data: dict) -> tuple[int, int]:
    """DELETE and POST at the same moment, each from its own client (thread)."""
    barrier, answers = threading.Barrier(2), {}

    def run(name, call):
        client = Api(api.client.application.test_client(), api.token)
        barrier.wait()
        answers[name] = call(client).status_code

    threads = [threading.Thread(target=run, args=("delete", lambda c: c.delete(delete_path))),
               threading.Thread(target=run, args=("create", lambda c: c.post(create_path, data=data)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers["delete"], answers["create"]


def _contact(api, n):
    return api.post("/api/contacts", data={"msisdn": f"+2526623{n:05d}"}).get_json()


def _contact_vs_participation(api, n):
    contact, callout = _contact(api, n), api.post("/api/callouts").get_json()
    return (f"/api/contacts/{contact['id']}", f"/api/callouts/{callout['id']}/callout_participations",
            {"contact_id": contact["id"]})


def _callout_vs_participation(api, n):
    contact, callout = _contact(api, n), api.post("/api/callouts").get_json()
    return (f"/api/callouts/{callout['id']}", f"/api/callouts/{callout['id']}/callout_participations",
            {"contact_id": contact["id"]})


def _callout_vs_batch_operation(api, n):
    callout = api.post("/api/callouts").get_json()
    return (f"/api/callouts/{callout['id']}", "/api/batch_operations",
            {"type": "BatchOperation::CalloutPopulation", "callout_id": callout["id"]})


def _participation_vs_phone_call(api, n):
    _delete, create, data = _contact_vs_participation(api, n)
    participation = api.post(create, data=data).get_json()
    return (f"/api/callout_participations/{participation['id']}",
            f"/api/callout_participations/{participation['id']}/phone_calls", DEMO)


@pytest.mark.parametrize("setup", [_contact_vs_participation, _callout_vs_participation, _callout_vs_batch_operation,
                                   _participation_vs_phone_call], ids=lambda f: f.__name__.strip("_"))
def test_a_parent_deleted_while_a_child_is_created_is_a_clear_4xx_never_a_5xx(api, deps, setup):
    for n in range(ROUNDS):
        delete_path, create_path, data = setup(api, n)
        deleted, created = _race(api, delete_path, create_path, data)
        assert deleted in (204, 422) and created in (201, 404, 422), (n, deleted, created)
        assert (deleted == 204) != (created == 201), (n, deleted, created)  # exactly one of the two happened
        assert api.get(delete_path).status_code == (404 if deleted == 204 else 200)
    with deps.engine.connect() as conn:  # nothing refers to a row that is gone
        assert conn.execute(text(
            "SELECT count(*) FROM callout_participations p LEFT JOIN callouts c ON c.id = p.callout_id "
            "LEFT JOIN contacts k ON k.id = p.contact_id WHERE c.id IS NULL OR k.id IS NULL")).scalar() == 0
        assert conn.execute(text(
            "SELECT count(*) FROM phone_calls pc LEFT JOIN callout_participations p "
            "ON p.id = pc.callout_participation_id WHERE pc.callout_participation_id IS NOT NULL AND p.id IS NULL"
        )).scalar() == 0
