"""Accounts and access tokens through HTTP, as the reference uses them."""
from tests.integration.conftest import Api


def test_super_admin_creates_updates_lists_and_deletes_accounts(admin):
    created = admin.post("/api/accounts")
    assert created.status_code == 201
    account = created.get_json()
    assert account["permissions"] == [] and account["settings"] == {} and account["metadata"] == {}
    assert account["twilio_account_sid"] is None and account["somleng_account_sid"] is None
    assert "twilio_auth_token" not in account
    path = f"/api/accounts/{account['id']}"
    assert created.headers["Location"] == path
    response = admin.patch(path, data={"somleng_account_sid": "abcdefg", "metadata[name]": "Basic Account",
                                       "somleng_auth_token": "secret"})
    assert response.status_code == 204
    fetched = admin.get(path).get_json()
    assert fetched["somleng_account_sid"] == "abcdefg" and fetched["metadata"] == {"name": "Basic Account"}
    assert "somleng_auth_token" not in fetched
    listing = admin.get("/api/accounts")
    assert listing.headers["Total"] == "2"
    assert [a["permissions"] for a in listing.get_json()] == [["super_admin"], []]
    assert admin.get("/api/accounts?q[metadata][name]=Basic+Account").headers["Total"] == "1"
    assert admin.delete(path).status_code == 204
    assert admin.get(path).status_code == 404


def test_an_account_with_tokens_cannot_be_deleted(app, admin):
    account = admin.post("/api/accounts").get_json()
    admin.post("/api/access_tokens", data={"account_sid": account["id"]})
    refused = admin.delete(f"/api/accounts/{account['id']}")
    assert refused.status_code == 422
    assert refused.get_json()["errors"]["base"][0].startswith("Cannot delete record because")


def test_access_tokens_are_shown_once_and_work_at_once(app, admin):
    account = admin.post("/api/accounts").get_json()
    created = admin.post("/api/access_tokens", data={"account_sid": account["id"]})
    assert created.status_code == 201
    body = created.get_json()
    assert len(body["token"]) == 64 and body["account_id"] == account["id"] and body["metadata"] == {}
    user = Api(app.test_client(), body["token"])
    assert user.get("/api/account").get_json()["id"] == account["id"]
    assert user.get("/api/access_tokens").headers["Total"] == "1"
    assert "token" not in user.get(f"/api/access_tokens/{body['id']}").get_json()
    assert user.delete(f"/api/access_tokens/{body['id']}").status_code == 204
    assert user.get("/api/account").status_code == 401


def test_tokens_authenticate_by_basic_bearer_or_query_parameter(app, api):
    client = app.test_client()
    assert client.get("/api/contacts", headers={"Authorization": f"Bearer {api.token}"}).status_code == 200
    assert client.get(f"/api/contacts?access_token={api.token}").status_code == 200
    missing = client.get("/api/contacts")
    assert missing.status_code == 401 and missing.data == b"" and "WWW-Authenticate" in missing.headers
    assert client.get("/api/contacts", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_only_super_admins_use_the_accounts_routes(api, admin):
    assert api.get("/api/accounts").status_code == 403
    assert api.post("/api/accounts").status_code == 403
    own = api.get("/api/account").get_json()
    assert api.get(f"/api/accounts/{own['id']}").status_code == 403
    assert api.patch("/api/account", data={"twilio_account_sid": "AC123", "twilio_auth_token": "t"}).status_code == 204
    assert api.get("/api/account").get_json()["twilio_account_sid"] == "AC123"
    assert api.patch("/api/account", data={"permissions[]": "super_admin"}).status_code == 422
    assert api.post("/api/access_tokens", data={"account_sid": 1}).status_code == 422


def test_account_settings_are_validated(admin):
    assert admin.post("/api/accounts", data={"platform_provider_name": "nexmo"}).status_code == 422
    assert admin.post("/api/accounts", data={"calls_per_second": "0"}).status_code == 422
    assert admin.post("/api/accounts", data={"calls_per_second": "fast"}).status_code == 422
    good = admin.post("/api/accounts", data={"platform_provider_name": "somleng", "calls_per_second": "10"})
    assert good.status_code == 201 and good.get_json()["calls_per_second"] == 10.0
    taken = admin.post("/api/accounts", data={"somleng_account_sid": "s1"})
    assert taken.status_code == 201
    again = admin.post("/api/accounts", data={"somleng_account_sid": "s1"})
    assert again.get_json() == {"errors": {"somleng_account_sid": ["has already been taken"]}}
