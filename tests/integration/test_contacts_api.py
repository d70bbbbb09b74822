"""Contacts through HTTP, as the reference and getting-started guide use them."""
import json


def test_creating_a_contact_answers_201_with_the_contact_and_its_location(api):
    response = api.post("/api/contacts", data={"msisdn": "+252662345678"})
    assert response.status_code == 201
    body = response.get_json()
    assert body["msisdn"] == "+252662345678"
    assert body["metadata"] == {}
    assert body["created_at"].endswith("Z") and len(body["created_at"]) == 24
    assert response.headers["Location"] == f"/api/contacts/{body['id']}"


def test_msisdn_is_normalized_and_must_be_valid_and_unique(api):
    assert api.post("/api/contacts", data={"msisdn": "252662345678"}).get_json()["msisdn"] == "+252662345678"
    duplicate = api.post("/api/contacts", data={"msisdn": "+252662345678"})
    assert duplicate.status_code == 422
    assert duplicate.get_json() == {"errors": {"msisdn": ["has already been taken"]}}
    invalid = api.post("/api/contacts", data={"msisdn": "1234"})
    assert invalid.status_code == 422
    assert invalid.get_json() == {"errors": {"msisdn": ["is invalid"]}}
    blank = api.post("/api/contacts", data={})
    assert blank.get_json() == {"errors": {"msisdn": ["can't be blank"]}}


def test_leading_bracket_form_sets_metadata(api):
    contact = api.post("/api/contacts", data={"msisdn": "+252662345679", "[metadata][name]": "Bob",
                                              "[metadata][gender]": "m"}).get_json()
    assert contact["metadata"] == {"name": "Bob", "gender": "m"}
    assert api.patch(f"/api/contacts/{contact['id']}", data={"[metadata][name]": "Alice"}).status_code == 204
    assert api.get(f"/api/contacts/{contact['id']}").get_json()["metadata"] == {"name": "Alice", "gender": "m"}


def test_metadata_merge_modes(api):
    contact = api.post("/api/contacts", json={"msisdn": "+252662345700",
                                              "metadata": {"name": "Alice", "address": {"city": "PP", "zip": "1"}}})
    path = f"/api/contacts/{contact.get_json()['id']}"

    def metadata():
        return api.get(path).get_json()["metadata"]

    api.patch(path, data={"metadata_merge_mode": "merge", "metadata[province]": "Kampong Thom"})
    assert metadata() == {"name": "Alice", "address": {"city": "PP", "zip": "1"}, "province": "Kampong Thom"}
    api.patch(path, data={"metadata[address][city]": "SR", "metadata_merge_mode": "deep_merge"})
    assert metadata()["address"] == {"city": "SR", "zip": "1"}
    api.patch(path, data={"metadata[address][zip]": "2"})
    assert metadata()["address"] == {"zip": "2"}
    api.patch(path, data={"metadata_merge_mode": "replace", "metadata[gender]": "f"})
    assert metadata() == {"gender": "f"}
    unknown = api.patch(path, data={"metadata_merge_mode": "smash", "metadata[x]": "1"})
    assert unknown.status_code == 422
    assert unknown.get_json() == {"errors": {"metadata_merge_mode": ["is not included in the list"]}}
    assert metadata() == {"gender": "f"}


def test_update_changes_msisdn_and_answers_204_with_no_body(api):
    contact = api.post("/api/contacts", data={"msisdn": "+252662345699"}).get_json()
    response = api.patch(f"/api/contacts/{contact['id']}", data={"msisdn": "+252662345700", "metadata[name]": "Alice"})
    assert response.status_code == 204 and response.data == b""
    fetched = api.get(f"/api/contacts/{contact['id']}").get_json()
    assert fetched["msisdn"] == "+252662345700" and fetched["metadata"] == {"name": "Alice"}
    assert fetched["updated_at"] >= fetched["created_at"]


def test_index_is_paginated_with_headers(api):
    for n in range(30):
        api.post("/api/contacts", data={"msisdn": f"+2526623457{n:02d}"})
    first = api.get("/api/contacts")
    assert first.status_code == 200
    assert first.headers["Per-Page"] == "25" and first.headers["Total"] == "30"
    assert len(first.get_json()) == 25
    assert 'rel="next"' in first.headers["Link"] and "page=2" in first.headers["Link"]
    second = api.get("/api/contacts?page=2&per_page=25")
    assert [c["msisdn"] for c in second.get_json()] == [f"+2526623457{n:02d}" for n in range(25, 30)]
    assert api.get("/api/contacts?per_page=1000").headers["Per-Page"] == "100"
    assert api.get("/api/contacts?page=0").status_code == 422
    assert api.get("/api/contacts?page=abc").status_code == 422


def test_filters_by_metadata_msisdn_and_timestamps(api):
    alice = api.post("/api/contacts", data={"msisdn": "+252662345700", "metadata[gender]": "f",
                                            "metadata[age]": "20"}).get_json()
    api.post("/api/contacts", json={"msisdn": "+252662345701", "metadata": {"gender": "m", "age": 20}})
    assert [c["id"] for c in api.get("/api/contacts?q[metadata][gender]=f").get_json()] == [alice["id"]]
    assert api.get("/api/contacts?q[metadata][age]=20").headers["Total"] == "2"
    assert [c["id"] for c in api.get("/api/contacts?q[msisdn]=252662345700").get_json()] == [alice["id"]]
    assert api.get("/api/contacts?q[created_at_before]=2017-11-29+01:36:02").headers["Total"] == "0"
    assert api.get("/api/contacts?q[created_at_after]=2017-11-29+01:36:02").headers["Total"] == "2"
    assert api.get("/api/contacts?q[updated_at_or_after]=2017-11-29").headers["Total"] == "2"
    today = alice["created_at"][:10]
    assert api.get(f"/api/contacts?q[created_at_before]={today}").headers["Total"] == "0"
    assert api.get(f"/api/contacts?q[created_at_or_before]={today}").headers["Total"] == "2"
    assert api.get(f"/api/contacts?q[created_at_after]={today}").headers["Total"] == "0"


def test_unknown_filters_and_unparsable_values_are_422(api):
    unknown = api.get("/api/contacts?q[gender]=f")
    assert unknown.status_code == 422
    assert unknown.get_json() == {"errors": {"q[gender]": ["is not a valid filter"]}}
    assert api.get("/api/contacts?q[created_at_before]=yesterday").status_code == 422
    assert api.get("/api/contacts?q[msisdn]=abc").status_code == 422


def test_delete_answers_204_then_404(api):
    contact = api.post("/api/contacts", data={"msisdn": "+85510202103"}).get_json()
    assert api.delete(f"/api/contacts/{contact['id']}").status_code == 204
    missing = api.get(f"/api/contacts/{contact['id']}")
    assert missing.status_code == 404
    assert missing.get_json() == {"status": 404, "error": "Not Found"}


def test_malformed_bodies_are_400_and_lose_nothing(api):
    bad_json = api.post("/api/contacts", data="{not json", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400
    assert "base" in bad_json.get_json()["errors"]
    conflicting = api.post("/api/contacts", data="metadata=1&metadata[a]=2",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert conflicting.status_code == 400
    not_object = api.post("/api/contacts", json={"msisdn": "+252662345700", "metadata": "x"})
    assert not_object.status_code == 422 and not_object.get_json() == {"errors": {"metadata": ["is invalid"]}}
    unknown_field = api.post("/api/contacts", data={"msisdn": "+252662345700", "msisdnn": "1"})
    assert unknown_field.status_code == 422
    assert api.get("/api/contacts").headers["Total"] == "0"


def test_oversized_bodies_and_metadata_are_rejected(api):
    big = api.post("/api/contacts", json={"msisdn": "+252662345700", "metadata": {"x": "y" * (2 * 1024 * 1024)}})
    assert big.status_code == 413
    large = api.post("/api/contacts", data=json.dumps({"msisdn": "+252662345700", "metadata": {"x": "y" * 70000}}),
                     headers={"Content-Type": "application/json"})
    assert large.status_code == 422
    assert api.get("/api/contacts").headers["Total"] == "0"


def test_ids_that_are_not_numbers_are_404(api):
    assert api.get("/api/contacts/abc").status_code == 404
    assert api.get("/api/contacts/99999999999999999999999").status_code == 404


def test_totals_are_exact_up_to_ten_thousand_then_the_planners_estimate(api, deps):
    from sqlalchemy import text

    account_id = api.get("/api/account").get_json()["id"]
    with deps.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO contacts (account_id, msisdn, metadata) SELECT :account, '+8551' || lpad(n::text, 7, '0'), "
            "jsonb_build_object('gender', CASE WHEN n <= 10 THEN 'x' ELSE 'f' END) FROM generate_series(1, 10050) n"),
            {"account": account_id})
        conn.execute(text("ANALYZE contacts"))
    few = api.get("/api/contacts?q[metadata][gender]=x")
    assert few.headers["Total"] == "10" and "Total-Estimated" not in few.headers
    many = api.get("/api/contacts?q[metadata][gender]=f")
    assert many.headers["Total-Estimated"] == "true" and int(many.headers["Total"]) > 10_000
    assert len(many.get_json()) == 25 and 'rel="last"' in many.headers["Link"]
