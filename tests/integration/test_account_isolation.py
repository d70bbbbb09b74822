"""Two accounts cannot see or touch each other's records through any route."""


def test_another_accounts_records_are_404_on_every_route(api, other_api, app):
    contact = api.post("/api/contacts", data={"msisdn": "+252662345678"}).get_json()
    token_id = api.get("/api/access_tokens").get_json()[0]["id"]
    contact_import = api.post("/api/contact_imports", data=b"msisdn\n+252662345670\n", content_type="text/csv")
    rules = [r for r in app.url_map.iter_rules() if r.rule.startswith("/api/") and "<" in r.rule]
    ids = {"contact_id": contact["id"], "token_id": token_id, "contact_import_id": contact_import.get_json()["id"]}
    checked = 0
    for rule in rules:
        if rule.rule.startswith("/api/accounts/"):
            continue  # super admins only: 403 for both accounts
        values = {arg: ids.get(arg) for arg in rule.arguments}
        if None in values.values():
            continue
        path = rule.build(values, append_unknown=False)[1]
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = getattr(other_api, method.lower())(path)
            assert response.status_code == 404, (method, path, response.status_code)
            checked += 1
    assert checked >= 5
    assert other_api.get("/api/contacts").headers["Total"] == "0"
    assert other_api.get(f"/api/contacts?q[msisdn]={contact['msisdn'][1:]}").headers["Total"] == "0"
    assert api.get(f"/api/contacts/{contact['id']}").status_code == 200
    assert api.get(f"/api/contact_imports/{ids['contact_import_id']}").status_code == 200
    assert other_api.get("/api/contact_imports").headers["Total"] == "0"
    assert other_api.get("/api/contacts.csv").get_data(as_text=True) == "id,msisdn,created_at,updated_at\r\n"
    assert api.get(f"/api/access_tokens/{token_id}").status_code == 200
    # the same msisdn is free in another account
    assert other_api.post("/api/contacts", data={"msisdn": "+252662345678"}).status_code == 201
