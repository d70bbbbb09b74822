"""The dashboard over HTTP (the Flask test client): sign-in and its cookie, CSRF, the Content-Security-Policy,
isolation between accounts, the population preview, the import, and the size of every page."""
from __future__ import annotations

import io
import re

import pytest

from scfm.entrypoints.dashboard import CONTENT_SECURITY_POLICY

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
MAX_PAGE_BYTES = 100 * 1024


class Browser:
    """The test client as a browser: it keeps the session cookie and sends the CSRF token of the last page."""

    def __init__(self, client):
        self.client = client
        self.csrf = ""

    def get(self, path, **kwargs):
        response = self.client.get(path, **kwargs)
        found = CSRF.search(response.get_data(as_text=True)) if response.mimetype == "text/html" else None
        if found:
            self.csrf = found.group(1)
        return response

    def post(self, path, data=None, csrf=True, **kwargs):
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf_token", self.csrf)
        return self.client.post(path, data=data, **kwargs)

    def sign_in(self, token):
        self.get("/sign_in")
        response = self.post("/sign_in", {"access_token": token})
        assert response.status_code == 302, response.get_data(as_text=True)
        self.get(response.headers["Location"])
        return response


@pytest.fixture
def browser(app, api):
    browser = Browser(app.test_client())
    browser.sign_in(api.token)
    return browser


def text(response) -> str:
    return response.get_data(as_text=True)


def test_pages_need_a_signed_in_token_and_sign_in_sets_a_safe_cookie(app, api):
    client = Browser(app.test_client())
    answer = client.get("/callouts")
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/sign_in?next=/callouts")

    client.get("/sign_in")
    refused = client.post("/sign_in", {"access_token": "not-a-token"})
    assert refused.status_code == 401 and "not valid" in text(refused)
    assert client.get("/callouts").status_code == 302

    signed_in = client.post("/sign_in?next=/contacts", {"access_token": api.token})
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == "/contacts"
    cookie = signed_in.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie  # PUBLIC_URL is http
    value = cookie.split(";")[0].split("=", 1)[1]
    stored = app.session_interface.get_signing_serializer(app).loads(value)
    assert set(stored) == {"session_key", "csrf"} and api.token not in repr(stored)
    assert client.get("/contacts").status_code == 200


def test_sign_in_never_sends_the_browser_elsewhere(app, api):
    client = Browser(app.test_client())
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        client.get("/sign_in")
        answer = client.post(f"/sign_in?next={target}", {"access_token": api.token})
        assert answer.headers["Location"] == "/callouts"


def test_every_page_has_the_content_security_policy_and_no_inline_script(browser, api):
    callout = api.post("/api/callouts").get_json()
    for path in ("/sign_in", "/callouts", f"/callouts/{callout['id']}", "/contacts", "/phone_calls", "/account"):
        page = browser.get(path)
        assert page.status_code == 200, path
        assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        scripts = re.findall(r"<script([^>]*)>", text(page))
        assert scripts and all('src="/assets/' in attributes for attributes in scripts), path
        assert " style=" not in text(page) and "<style" not in text(page)
        assert len(page.data) < MAX_PAGE_BYTES
        assert 'dir="ltr"' in text(page) and 'lang="en"' in text(page)


def test_a_form_without_the_session_csrf_token_is_refused_and_changes_nothing(browser, api, deps):
    refused = browser.post("/callouts", {"name": "Flood"}, csrf=False)
    assert refused.status_code == 400
    forged = browser.post("/callouts", {"name": "Flood", "csrf_token": "forged"}, csrf=False)
    assert forged.status_code == 400
    assert api.get("/api/callouts").get_json() == []

    made = browser.post("/callouts", {"name": "Flood"})
    assert made.status_code == 302
    [callout] = api.get("/api/callouts").get_json()
    assert callout["metadata"] == {"name": "Flood"}
    assert made.headers["Location"] == f"/callouts/{callout['id']}"


def test_the_api_takes_no_csrf_token_and_no_cookie(browser, api, app):
    assert api.post("/api/callouts").status_code == 201  # a token, no CSRF
    assert browser.client.get("/api/callouts").status_code == 401  # the session cookie is not an API credential


def test_a_callout_is_started_paused_resumed_and_stopped_from_its_page(browser, api):
    callout = api.post("/api/callouts").get_json()
    path = f"/callouts/{callout['id']}"
    page = text(browser.get(path))
    assert 'value="start"' in page and 'value="pause"' not in page
    for event, status in (("start", "running"), ("pause", "paused"), ("resume", "running"), ("stop", "stopped")):
        assert browser.post(f"{path}/events", {"event": event}).status_code == 302
        assert api.get(f"/api/callouts/{callout['id']}").get_json()["status"] == status
    refused = browser.post(f"{path}/events", {"event": "start"})
    assert refused.status_code == 422 and "refused" in text(refused)


def test_adding_contacts_by_their_fields_shows_who_before_anything_is_added(browser, api, run_jobs):
    for number, district in (("+85512345001", "Kampot"), ("+85512345002", "Kampot"), ("+85512345003", "Kep")):
        api.post("/api/contacts", data={"msisdn": number, "metadata[district]": district})
    callout = api.post("/api/callouts").get_json()
    answer = browser.post(f"/callouts/{callout['id']}/populations",
                          {"key": ["district", ""], "value": ["Kampot", ""]})
    assert answer.status_code == 302
    preview = text(browser.get(answer.headers["Location"]))
    assert "+85512345001" in preview and "+85512345002" in preview and "+85512345003" not in preview
    assert api.get(f"/api/callouts/{callout['id']}/callout_participations").get_json() == []

    operation_id = answer.headers["Location"].rsplit("/", 1)[1]
    assert browser.post(f"/batch_operations/{operation_id}/queue").status_code == 302
    run_jobs()
    participations = api.get(f"/api/callouts/{callout['id']}/callout_participations").get_json()
    assert sorted(p["msisdn"] for p in participations) == ["+85512345001", "+85512345002"]
    page = text(browser.get(f"/callouts/{callout['id']}"))
    assert "+85512345001" in page and "+85512345003" not in page


def test_another_accounts_token_sees_nothing_of_this_one(app, api, other_api, run_jobs):
    contact = api.post("/api/contacts", data={"msisdn": "+85512345678", "metadata[name]": "Dara"}).get_json()
    callout = api.post("/api/callouts", data={"metadata[name]": "Secret flood"}).get_json()
    api.post(f"/api/callouts/{callout['id']}/callout_participations", data={"contact_id": contact["id"]})
    other = Browser(app.test_client())
    other.sign_in(other_api.token)
    for path in ("/callouts", "/contacts", "/phone_calls", "/account"):
        page = text(other.get(path))
        assert "Secret flood" not in page and "85512345678" not in page and "Dara" not in page, path
    assert "No contacts match." in text(other.get("/contacts?msisdn=%2B85512345678"))
    for path in (f"/callouts/{callout['id']}", f"/contacts/{contact['id']}", f"/callouts/{callout['id']}?show=calls"):
        assert other.get(path).status_code == 404, path
    assert other.post(f"/callouts/{callout['id']}/events", {"event": "start"}).status_code == 404
    assert other.post(f"/callouts/{callout['id']}/populations", {}).status_code == 404
    assert api.get(f"/api/callouts/{callout['id']}").get_json()["status"] == "initialized"
    exported = other.get("/contacts.csv")
    assert exported.status_code == 200 and "85512345678" not in text(exported)


def test_sign_out_ends_the_session_and_a_deleted_token_ends_it_too(browser, api, app):
    assert browser.post("/sign_out").status_code == 302
    assert browser.get("/callouts").status_code == 302

    browser.sign_in(api.token)
    token_id = api.get("/api/access_tokens").get_json()[0]["id"]
    assert browser.get("/callouts").status_code == 200
    api.delete(f"/api/access_tokens/{token_id}")
    assert browser.get("/callouts").status_code == 302


def test_a_copied_cookie_does_not_survive_sign_out(app, browser, api, deps):
    from sqlalchemy import text as sql

    cookie = browser.client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    copy = Browser(app.test_client())
    copy.client.set_cookie(app.config["SESSION_COOKIE_NAME"], cookie)
    assert copy.get("/callouts").status_code == 200  # the same session, from elsewhere
    with deps.engine.connect() as conn:
        stored = conn.execute(sql("SELECT session_digest FROM dashboard_sessions")).scalars().all()
    key = app.session_interface.get_signing_serializer(app).loads(cookie)["session_key"]
    assert key not in stored and len(stored) == 1  # only its digest is kept

    assert browser.post("/sign_out").status_code == 302
    assert copy.get("/callouts").status_code == 302  # signed out for every copy of the cookie
    assert browser.get("/callouts").status_code == 302
    browser.sign_in(api.token)  # a new session; the old one stays ended
    assert browser.get("/callouts").status_code == 200 and copy.get("/callouts").status_code == 302

    signed_in = browser.client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    browser.sign_in(api.token)  # over a session still going: that one ends
    copy.client.set_cookie(app.config["SESSION_COOKIE_NAME"], signed_in)
    assert copy.get("/callouts").status_code == 302 and browser.get("/callouts").status_code == 200


def test_a_token_keeps_its_latest_sessions_only(app, browser, api, deps):
    from sqlalchemy import text as sql

    from scfm.domain.model import MAX_SESSIONS_PER_TOKEN

    name = app.config["SESSION_COOKIE_NAME"]
    first = browser.client.get_cookie(name).value
    others = [Browser(app.test_client()) for _ in range(MAX_SESSIONS_PER_TOKEN)]
    for other in others:
        other.sign_in(api.token)
    with deps.engine.connect() as conn:
        assert conn.execute(sql("SELECT count(*) FROM dashboard_sessions")).scalar_one() == MAX_SESSIONS_PER_TOKEN
    assert browser.get("/callouts").status_code == 302  # the oldest ended
    assert all(other.get("/callouts").status_code == 200 for other in others)
    assert first != others[0].client.get_cookie(name).value


def test_a_new_access_token_is_shown_once_and_secrets_are_never_shown(browser, api):
    api.patch("/api/account", data={"twilio_auth_token": "very-secret-provider-token"})
    page = text(browser.get("/account"))
    assert "very-secret-provider-token" not in page and "(this session's)" in page
    created = browser.post("/access_tokens")
    assert created.status_code == 201
    token = re.search(r'<code id="new-token">([^<]+)</code>', text(created)).group(1)
    assert browser.client.get("/account").status_code == 200 and token not in text(browser.get("/account"))
    assert api.__class__(api.client, token).get("/api/callouts").status_code == 200

    assert browser.post("/account/provider", {"twilio_account_sid": "", "twilio_auth_token": ""}).status_code == 302
    assert browser.post("/account/rates", {"calls_per_second": "2.5", "max_calls_in_flight": "7"}).status_code == 302
    account = api.get("/api/account").get_json()
    assert account["calls_per_second"] == 2.5 and account["max_calls_in_flight"] == 7
    refused = browser.post("/account/rates", {"calls_per_second": "fast"})
    assert refused.status_code == 422


def test_a_csv_import_shows_its_progress_and_its_refused_rows(browser, api, run_jobs):
    body = "phone,district\n+85512345001,Kampot\nnot a number,Kep\n+85512345002,Kep\n"
    answer = browser.post("/contact_imports", {"file": (io.BytesIO(body.encode()), "people.csv")},
                          content_type="multipart/form-data")
    assert answer.status_code == 302, text(answer)
    run_jobs()
    page = browser.get(answer.headers["Location"])
    assert "people.csv" in text(page) and "data-refresh" not in text(page)
    assert re.search(r"<dt>New contacts</dt><dd>2</dd>", text(page))
    errors_link = re.search(r'href="(/contact_imports/\d+/errors.csv)"', text(page)).group(1)
    refused = browser.get(errors_link)
    assert refused.status_code == 200 and "not a number" in text(refused)
    contacts = text(browser.get("/contacts?key=district&value=Kep"))
    assert "+85512345002" in contacts and "+85512345001" not in contacts
    exported = browser.get("/contacts.csv?key=district&value=Kampot")
    assert exported.mimetype == "text/csv" and "+85512345001" in text(exported) and "+85512345002" not in text(exported)


def test_an_import_without_a_file_or_with_unstorable_options_is_refused(browser, api):
    answer = browser.post("/contact_imports", {}, content_type="multipart/form-data")
    assert answer.status_code == 422
    answer = browser.post("/contact_imports", {"file": (io.BytesIO(b"phone\n+85512345001\n"), "a.csv"),
                                               "msisdn_column": "ph\x00one"}, content_type="multipart/form-data")
    assert answer.status_code == 400 and answer.mimetype == "text/html"
    assert api.get("/api/contact_imports").get_json() == []


def test_a_big_list_shows_an_estimated_total(browser, api, deps, monkeypatch):
    from scfm.adapters.postgres import repositories

    monkeypatch.setattr(repositories, "EXACT_TOTAL_UP_TO", 2)
    for number in range(4):
        api.post("/api/contacts", data={"msisdn": f"+8551234500{number}"})
    page = text(browser.get("/contacts"))
    assert "in all" in page and "about" in page


def test_the_api_docs_work_offline(app):
    client = app.test_client()
    docs = text(client.get("/api/docs"))
    assert "http://" not in docs and "https://" not in docs
    for asset in re.findall(r'(?:src|href)="([^"]+)"', docs):
        assert client.get(asset).status_code == 200, asset


def test_pages_of_a_filtered_list_keep_the_filters(browser, api):
    for number in range(27):
        api.post("/api/contacts", data={"msisdn": f"+8551234{number:04d}", "metadata[district]": "Kep"})
    api.post("/api/contacts", data={"msisdn": "+85598765432", "metadata[district]": "Kampot"})
    first = text(browser.get("/contacts?key=district&value=Kep"))
    assert "Page 1 of 2" in first and "27 in all" in first
    next_page = re.search(r'<a rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    assert next_page.startswith("/contacts?") and "key=district" in next_page and "page=2" in next_page
    second = text(browser.get(next_page))
    assert "Page 2 of 2" in second and second.count("<bdi>+8551234") == 2 and "+85598765432" not in second


def test_a_number_that_is_not_a_phone_number_is_said_so_on_the_page_that_searched(browser, api):
    api.post("/api/contacts", data={"msisdn": "+85512345001"})
    page = browser.get("/contacts?msisdn=12ab")
    assert page.status_code == 422 and page.mimetype == "text/html"
    assert re.search(r'<p id="msisdn-problem" class="errors" role="alert">12ab is not a phone number', text(page))
    assert 'aria-invalid="true"' in text(page) and "<h1>Contacts</h1>" in text(page)
    assert "+85512345001" not in text(page)
    callout = api.post("/api/callouts").get_json()
    page = browser.get(f"/callouts/{callout['id']}?msisdn=nope")
    assert page.status_code == 422 and "nope is not a phone number" in text(page)
    assert browser.get("/contacts?msisdn=%2B85512345001").status_code == 200


def test_a_database_or_redis_that_does_not_answer_is_a_page_not_the_apis_json(browser, api, monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError
    from sqlalchemy.exc import OperationalError

    from scfm.services import callouts, contacts

    def database_down(*_args, **_kwargs):
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    def redis_down(*_args, **_kwargs):
        raise RedisConnectionError("connection refused")

    monkeypatch.setattr(contacts, "list_contacts", database_down)
    monkeypatch.setattr(callouts, "fire_callout_event", redis_down)
    page = browser.get("/contacts")
    assert page.status_code == 503 and page.mimetype == "text/html"
    assert "The service is unavailable" in text(page) and "Try again in a moment" in text(page)
    callout = api.post("/api/callouts").get_json()
    browser.get(f"/callouts/{callout['id']}")
    page = browser.post(f"/callouts/{callout['id']}/events", {"event": "start"})
    assert page.status_code == 503 and page.mimetype == "text/html"
    monkeypatch.undo()
    assert api.get("/api/contacts").status_code == 200  # the API's own answers are untouched


def test_malformed_parameters_are_a_page_too(browser, api):
    for path in ("/contacts?msisdn=%00", "/callouts?status=%00", "/phone_calls?page=%00"):
        page = browser.get(path)
        assert page.status_code == 400 and page.mimetype == "text/html", path
        assert "That was refused" in text(page)
    for path in ("/contacts?page=abc", "/callouts?page=-3", "/phone_calls?status=nonsense&page=99999999999"):
        assert browser.get(path).status_code == 200, path
    big = browser.get("/contacts?key=district&value=" + "x" * 5000)
    assert big.status_code in (200, 400) and big.mimetype == "text/html"


def test_the_callouts_page_shows_each_callouts_progress_from_one_read_of_the_counters(browser, api, deps):
    from sqlalchemy import event

    contacts = [api.post("/api/contacts", data={"msisdn": f"+8551234500{n}"}).get_json() for n in range(3)]
    for size in range(4):  # callouts of 0, 1, 2 and 3 contacts
        callout = api.post("/api/callouts", data={"metadata[name]": f"Callout of {size}"}).get_json()
        for contact in contacts[:size]:
            api.post(f"/api/callouts/{callout['id']}/callout_participations", data={"contact_id": contact["id"]})
    seen = []

    def record(_conn, _cursor, statement, *_args):
        seen.append(statement)

    event.listen(deps.engine, "before_cursor_execute", record)
    try:
        page = text(browser.get("/callouts"))
    finally:
        event.remove(deps.engine, "before_cursor_execute", record)
    assert len([s for s in seen if "callout_participation_counters" in s]) == 1, seen
    assert not [s for s in seen if "FROM callout_participations" in s], seen  # counters, not counts
    for size in range(4):
        row = re.search(rf">Callout of {size}</a></td>.*?</tr>", page, re.S).group(0)
        assert f">0 of {size}</span>" in row and f'max="{size or 1}" value="0"' in row, row


def test_a_callouts_live_statistics_are_a_fragment_that_refreshes_while_the_callout_runs(
        browser, api, app):
    callout = api.post("/api/callouts").get_json()
    contact = api.post("/api/contacts", data={"msisdn": "+85512345001"}).get_json()
    participation = api.post(f"/api/callouts/{callout['id']}/callout_participations",
                             data={"contact_id": contact["id"]}).get_json()
    live = browser.get(f"/callouts/{callout['id']}/live")
    assert live.status_code == 200 and live.mimetype == "text/html" and len(live.data) < 20 * 1024
    assert text(live).startswith("<section id=\"live\"") and "data-refresh" not in text(live)  # not started
    assert "0 of 1 contacts done" in text(live)
    api.post(f"/api/callouts/{callout['id']}/callout_events", data={"event": "start"})
    assert "data-refresh" in text(browser.get(f"/callouts/{callout['id']}/live"))
    api.post(f"/api/callout_participations/{participation['id']}/phone_calls",
             data={"remote_request_params[url]": "https://flows.example/a.xml"})
    page = text(browser.get(f"/callouts/{callout['id']}"))
    assert '<section id="live"' in page and 'data-source="/callouts/' in page and '<svg viewBox=' in page
    assert "Calls that ended per minute, by outcome" in page and " style=" not in page
    other = app.test_client()
    assert other.get(f"/callouts/{callout['id']}/live").status_code == 302  # signed in only


def test_the_call_plan_form_saves_the_callouts_plan_and_a_bad_one_names_the_field(browser, api):
    callout = api.post("/api/callouts").get_json()
    path = f"/callouts/{callout['id']}"
    page = text(browser.get(path))
    assert 'id="call-plan"' in page and "Preview the calls" in page  # no plan yet: the batch operations
    saved = browser.post(f"{path}/call_plan", {
        "plan_url": "https://flows.example/storm.xml", "plan_method": "POST", "plan_from": "1294",
        "max_attempts": "3", "retry_busy": "60, 600", "retry_not_answered": "", "time_zone": "Asia/Phnom_Penh",
        "days": ["mon", "tue"], "window_from": "08:00", "window_to": "18:00", "not_after": "2026-12-24T18:00"})
    assert saved.status_code == 302 and saved.headers["Location"].endswith("#call-plan")
    plan = api.get(f"/api/callouts/{callout['id']}").get_json()["call_plan"]
    assert plan == {"remote_request_params": {"url": "https://flows.example/storm.xml", "method": "POST",
                                              "from": "1294"},
                    "max_attempts": 3, "retries": {"busy": [60, 600]},
                    "window": {"time_zone": "Asia/Phnom_Penh", "days": ["mon", "tue"], "from": "08:00", "to": "18:00"},
                    "not_after": "2026-12-24T18:00:00+07:00"}  # in the window's time zone
    page = text(browser.get(path))
    assert 'value="60, 600"' in page and 'value="2026-12-24T18:00"' in page and 'value="mon" checked' in page
    assert "Preview the calls" not in page  # the plan calls
    refused = browser.post(f"{path}/call_plan", {"retry_busy": "often"})
    assert refused.status_code == 422 and refused.mimetype == "text/html"
    assert "call_plan[retries][busy]" in text(refused)
    assert api.get(f"/api/callouts/{callout['id']}").get_json()["call_plan"] == plan
    assert browser.post(f"{path}/call_plan", {"plan_method": "POST"}).status_code == 302  # empty: none
    assert api.get(f"/api/callouts/{callout['id']}").get_json()["call_plan"] is None


def test_a_callouts_results_download_as_csv_for_its_account_only(browser, api, app, other_api):
    contact = api.post("/api/contacts", data={"msisdn": "+85512345001", "metadata[district]": "Kep"}).get_json()
    callout = api.post("/api/callouts").get_json()
    api.post(f"/api/callouts/{callout['id']}/callout_participations", data={"contact_id": contact["id"]})
    answer = browser.get(f"/callouts/{callout['id']}/results.csv")
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    header, row = text(answer).splitlines()[:2]
    assert header.startswith("callout_participation_id,contact_id,msisdn") and "metadata.district" in header
    assert "+85512345001" in row and "Kep" in row
    other = Browser(app.test_client())
    other.sign_in(other_api.token)
    assert other.get(f"/callouts/{callout['id']}/results.csv").status_code == 404


def test_without_a_key_one_is_made_once_and_kept_in_the_data_folder(tmp_path):
    from scfm.config import Settings
    from scfm.entrypoints.dashboard import secret_key

    folder = tmp_path / "data"
    key = secret_key(Settings(data_dir=str(folder)))
    assert len(key) > 40 and secret_key(Settings(data_dir=str(folder))) == key
    assert (folder / "secret_key").stat().st_mode & 0o777 == 0o600
    assert secret_key(Settings(data_dir=str(tmp_path / "other"), secret_key="given")) == "given"
    assert not (tmp_path / "other").exists()


def test_a_callouts_page_counts_its_contacts_by_state_and_its_calls(browser, api):
    callout = api.post("/api/callouts").get_json()
    for number in ("+85512345001", "+85512345002"):
        contact = api.post("/api/contacts", data={"msisdn": number}).get_json()
        participation = api.post(f"/api/callouts/{callout['id']}/callout_participations",
                                 data={"contact_id": contact["id"]}).get_json()
        api.post(f"/api/callout_participations/{participation['id']}/phone_calls",
                 data={"remote_request_params[url]": "https://flows.example/a.xml"})
    page = text(browser.get(f"/callouts/{callout['id']}"))
    assert "<dt>Calls made</dt><dd>2</dd>" in page and "<dt>to call</dt><dd>2</dd>" in page
