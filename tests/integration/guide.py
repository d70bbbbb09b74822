"""Helpers for the getting-started guide as tests: one check per kind of answer the guide shows."""
import re

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
NOT_FOUND = {"status": 404, "error": "Not Found"}
DEMO_URL = "https://demo.twilio.com/docs/voice.xml"
NGROK_URL = "http://18a2c6b3.ngrok.io/api/remote_phone_call_events"
CAPOM_SHORT = "CallFlowLogic::AvfCapom::CapomShort"


def timestamps_ok(resource):
    assert TIMESTAMP.match(resource["created_at"]), resource["created_at"]
    assert TIMESTAMP.match(resource["updated_at"]), resource["updated_at"]


def created(response, path, keys):
    assert response.status_code == 201, response.get_json()
    assert response.headers["Location"].endswith(path), response.headers.get("Location")
    body = response.get_json()
    assert keys <= set(body), keys - set(body)
    timestamps_ok(body)
    return body


def no_content(response):
    assert response.status_code == 204, response.get_json()
    assert response.data == b""


def fetched(response, keys):
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert keys <= set(body), keys - set(body)
    timestamps_ok(body)
    return body


def listed(response, keys):
    """A 200 list with the pagination headers; (items, Total) for the caller to check."""
    assert response.status_code == 200, response.get_json()
    assert response.headers["Per-Page"] == "25"
    body = response.get_json()
    assert isinstance(body, list)
    total = int(response.headers["Total"])
    assert len(body) == min(total, 25)
    for item in body:
        assert keys <= set(item), keys - set(item)
        timestamps_ok(item)
    return body, total


def indexed(response, total, keys):
    body, actual = listed(response, keys)
    assert actual == total, (actual, [item["id"] for item in body])
    return body


def not_found(response):
    assert response.status_code == 404
    assert response.get_json() == NOT_FOUND


def unprocessable(response, errors):
    assert response.status_code == 422
    assert response.get_json() == {"errors": errors}


def pick(resource, *keys):
    return {key: resource[key] for key in keys}
