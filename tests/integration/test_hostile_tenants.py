"""An attacker's look at the dashboard, call plans and statistics: a tenant's data opened by someone else (in
a browser, in a spreadsheet) runs nothing, sign-in sends nobody elsewhere, another account's ids are 404s, and
odd values are 4xx, never 5xx."""
from __future__ import annotations

import csv
import io
import json

import pytest

from tests.integration.test_dashboard import Browser, text

FORMULAS = ["=HYPERLINK(\"https://evil.example\",\"x\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)", "\t=1+1"]


@pytest.fixture
def signed_in(app, api) -> Browser:
    browser = Browser(app.test_client())
    browser.sign_in(api.token)
    return browser


def _rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200, text(response)
    assert response.headers["Cache-Control"] == "no-store"
    return list(csv.DictReader(io.StringIO(text(response))))


def test_sign_in_never_sends_the_browser_elsewhere_through_a_tab_or_a_line_break(app, api):
    client = Browser(app.test_client())
    for target in ("/%09/evil.example", "/%0A/evil.example", "/%0D%0AX-Evil:%201", "/%20/evil.example",
                   "/%E3%80%80/evil.example"):
        client.get("/sign_in")
        answer = client.post(f"/sign_in?next={target}", {"access_token": api.token})
        assert answer.status_code == 302 and answer.headers["Location"] == "/callouts", target
        assert "X-Evil" not in answer.headers
    client.get("/sign_in")
    assert client.post("/sign_in?next=/contacts%3Fkey%3Da", {"access_token": api.token}).headers[
        "Location"] == "/contacts?key=a"


def test_a_not_after_no_time_zone_can_read_is_refused_and_the_callout_page_still_shows(signed_in, api):
    callout = api.post("/api/callouts").get_json()["id"]
    path = f"/api/callouts/{callout}"
    for not_after in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:00-05:00", "0001-01-02T00:00:00Z"):
        answer = api.patch(path, data=json.dumps({"call_plan": {"not_after": not_after}}),
                           content_type="application/json")
        assert answer.status_code == 422, (not_after, text(answer))
        assert answer.get_json()["errors"] == {"call_plan[not_after]": ["is out of range (years 2 to 9998)"]}
    assert api.get(path).get_json()["call_plan"] is None
    far = {"not_after": "9998-12-31T23:00:00Z", "remote_request_params": {"url": "https://flows.example/a.xml"},
           "window": {"time_zone": "Pacific/Kiritimati", "from": "08:00", "to": "18:00"}}
    assert api.patch(path, data=json.dumps({"call_plan": far}), content_type="application/json").status_code == 204
    page = signed_in.get(f"/callouts/{callout}")
    assert page.status_code == 200 and 'value="9999-01-01T13:00"' in text(page)
    assert signed_in.get(f"/callouts/{callout}/live").status_code == 200
    assert api.get(f"/api/callouts/{callout}/statistics").status_code == 200
    refused = signed_in.post(f"/callouts/{callout}/call_plan", {
        "not_after": "9999-12-31T23:59", "time_zone": "America/New_York", "window_from": "08:00", "window_to": "18:00"})
    assert refused.status_code == 422 and "call_plan[not_after]" in text(refused)


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_text_in_every_export(signed_in, api, run_jobs):
    contact = api.post("/api/contacts", data={"msisdn": "+85512345001", "metadata[note]": FORMULAS[0],
                                              "metadata[balance]": "-3", "metadata[code]": "+855"}).get_json()
    callout = api.post("/api/callouts").get_json()["id"]
    api.post(f"/api/callouts/{callout}/callout_participations", data={"contact_id": contact["id"]})
    inert = "'" + FORMULAS[0]
    for response in (api.get(f"/api/callouts/{callout}/results.csv"),
                     signed_in.get(f"/callouts/{callout}/results.csv"),
                     api.get("/api/contacts.csv"), signed_in.get("/contacts.csv"),
                     api.get(f"/api/callouts/{callout}/contacts.csv")):
        [row] = _rows(response)
        assert row["metadata.note"] == inert and row["msisdn"] == "+85512345001"  # a number stays a number
        assert row["metadata.balance"] == "-3" and row["metadata.code"] == "+855"

    body = "phone,note\n" + "".join(f"not a number,\"{formula}\"\n" for formula in FORMULAS)
    answer = signed_in.post("/contact_imports", {"file": (io.BytesIO(body.encode()), "people.csv")},
                          content_type="multipart/form-data")
    assert answer.status_code == 302
    run_jobs()
    contact_import = answer.headers["Location"].rsplit("/", 1)[1]
    for response in (signed_in.get(f"/contact_imports/{contact_import}/errors.csv"),
                     api.get(f"/api/contact_imports/{contact_import}/errors.csv")):
        cells = [cell for row in csv.reader(io.StringIO(text(response))) for cell in row]
        assert response.headers["Cache-Control"] == "no-store"
        for formula in FORMULAS:
            assert not any(cell.startswith(formula) for cell in cells), (formula, cells)
        assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t") and cell != "-3"], cells


def test_pages_may_not_be_framed(signed_in, api):
    for path in ("/sign_in", "/callouts", "/account"):
        page = signed_in.get(path)
        assert page.headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in page.headers[
            "Content-Security-Policy"]
        assert page.headers["Cache-Control"] == "no-store"


def test_every_dashboard_url_with_another_accounts_id_is_a_404_that_changes_nothing(app, api, other_api,
                                                                                    run_jobs):
    contact = api.post("/api/contacts", data={"msisdn": "+85512345678"}).get_json()["id"]
    callout = api.post("/api/callouts", data={"metadata[name]": "Secret flood"}).get_json()["id"]
    participation = api.post(f"/api/callouts/{callout}/callout_participations",
                             data={"contact_id": contact}).get_json()["id"]
    call = api.post(f"/api/callout_participations/{participation}/phone_calls",
                    data={"remote_request_params[url]": "https://flows.example/a.xml"}).get_json()["id"]
    operation = api.post(f"/api/callouts/{callout}/batch_operations",
                         data={"type": "BatchOperation::CalloutPopulation"}).get_json()["id"]
    owner = Browser(app.test_client())
    owner.sign_in(api.token)
    upload = owner.post("/contact_imports", {"file": (io.BytesIO(b"phone\nnope\n"), "a.csv")},
                        content_type="multipart/form-data")
    contact_import = upload.headers["Location"].rsplit("/", 1)[1]
    run_jobs()
    token = api.get("/api/access_tokens").get_json()[0]["id"]
    other = Browser(app.test_client())
    other.sign_in(other_api.token)
    for path in (f"/callouts/{callout}", f"/callouts/{callout}/live", f"/callouts/{callout}/results.csv",
                 f"/contacts/{contact}", f"/phone_calls/{call}", f"/batch_operations/{operation}",
                 f"/contact_imports/{contact_import}", f"/contact_imports/{contact_import}/errors.csv"):
        answer = other.get(path)
        assert answer.status_code == 404 and "Secret flood" not in text(answer), path
        assert answer.status_code == other.get(path.replace(str(callout), "999999", 1)).status_code
    for path, form in ((f"/callouts/{callout}/call_plan", {"max_attempts": "2"}),
                       (f"/callouts/{callout}/events", {"event": "start"}),
                       (f"/callouts/{callout}/phone_call_creates", {"url": "https://evil.example/x.xml"}),
                       (f"/callouts/{callout}/phone_call_queues", {}), (f"/batch_operations/{operation}/queue", {}),
                       (f"/batch_operations/{operation}/delete", {}), (f"/access_tokens/{token}/delete", {})):
        assert other.post(path, form).status_code == 404, path
    shown = api.get(f"/api/callouts/{callout}").get_json()
    assert shown["status"] == "initialized" and shown["call_plan"] is None
    assert api.get(f"/api/batch_operations/{operation}").get_json()["status"] == "preview"
    assert len(api.get("/api/batch_operations").get_json()) == 1
    assert owner.get("/callouts").status_code == 200  # the token still works


def test_a_plan_whose_keys_are_null_shows_blank_fields_and_the_form_saves_again(signed_in, api):
    callout = api.post("/api/callouts").get_json()["id"]
    nulls = {"max_attempts": None, "window": None, "retries": {"busy": None}, "not_after": None,
             "remote_request_params": None}
    assert api.patch(f"/api/callouts/{callout}", data=json.dumps({"call_plan": nulls}),
                     content_type="application/json").status_code == 204
    page = text(signed_in.get(f"/callouts/{callout}"))
    assert 'value="None"' not in page and '<input id="max_attempts" name="max_attempts" value=""' in page
    saved = signed_in.post(f"/callouts/{callout}/call_plan", {"max_attempts": "", "plan_method": "POST"})
    assert saved.status_code == 302


def test_the_dashboards_account_forms_are_bounded_as_the_api_and_nothing_odd_is_kept(signed_in, api):
    refusals = [
        ("/account/rates", {"calls_per_second": "nan"}, "calls_per_second: Special numeric values"),
        ("/account/rates", {"calls_per_second": "-1"}, "calls_per_second: must be greater than 0"),
        ("/account/rates", {"calls_per_second": "0"}, "calls_per_second: must be greater than 0"),
        ("/account/rates", {"max_calls_in_flight": "-5"}, "max_calls_in_flight: must be greater than 0"),
        ("/account/rates", {"calls_per_second": "fast"}, "calls_per_second: is invalid"),
        ("/account/provider", {"twilio_account_sid": "A" * 65},
         "twilio_account_sid: is too long (maximum is 64 characters)"),
        ("/account/provider", {"twilio_auth_token": "s" * 256},
         "twilio_auth_token: is too long (maximum is 255 characters)"),
        ("/account/provider", {"platform_provider_name": "evil"}, "platform_provider_name: is not included in"),
    ]
    for path, form, message in refusals:
        refused = signed_in.post(path, form)
        assert refused.status_code == 422 and refused.mimetype == "text/html", form
        assert message in text(refused), (form, text(refused))
    account = api.get("/api/account").get_json()
    assert account["calls_per_second"] is None and account["max_calls_in_flight"] is None
    assert account["twilio_account_sid"] is None and account["platform_provider_name"] is None


def test_an_estimate_at_the_slowest_rate_the_api_takes_is_not_a_5xx(api):
    assert api.patch("/api/account", data={"calls_per_second": "1e-300"}).status_code == 204
    plan = {"remote_request_params": {"url": "https://flows.example/a.xml"}}
    callout = api.post("/api/callouts", data=json.dumps({"call_plan": plan}),
                       content_type="application/json").get_json()["id"]
    contact = api.post("/api/contacts", data={"msisdn": "+85512345001"}).get_json()["id"]
    api.post(f"/api/callouts/{callout}/callout_participations", data={"contact_id": contact})
    assert api.post(f"/api/callouts/{callout}/callout_events", data={"event": "start"}).status_code == 201
    for path in (f"/api/callouts/{callout}/statistics", "/api/account/statistics"):
        answer = api.get(path)
        assert answer.status_code == 200, text(answer)
        assert answer.get_json()["estimate"]["calls_left"] == 1
        assert answer.get_json()["estimate"]["seconds_left"] is None
