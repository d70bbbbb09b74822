"""The dashboard in a real browser: Debian's Chromium driven by Playwright through a duty officer's job, against
the fake provider, with axe-core (npm, package-lock.json) checking every page it visits.

Chromium is /usr/bin/chromium (`./dev test` and .ci/run install it where missing); axe-core is
node_modules/axe-core (`npm ci`). Without them the tests are skipped, except in CI, where they fail.
"""
from __future__ import annotations

import csv
import io
import os
import re
import threading
import time
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.integration.conftest import PROVIDER_SID, signed_webhook

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
SERIOUS = ("serious", "critical")
WAIT_MS = 20_000  # how long an expectation may wait for the page (a refresh, a navigation) on a busy machine


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    if not AXE.exists():
        return f"{AXE} is missing (npm ci)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    return None


@pytest.fixture(scope="module")
def browser_kind():
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def live_url(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


@pytest.fixture
def new_page(browser_kind):
    contexts = []

    def make():
        # bypass_csp: the test injects axe-core as a script of its own, which the pages' policy refuses
        context = browser_kind.new_context(bypass_csp=True, locale="en-US")
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())  # the officer confirms every confirmation
        return page

    yield make
    for context in contexts:
        context.close()


def assert_accessible(page) -> None:
    """axe-core finds no serious or critical violation on the page as it stands."""
    page.add_script_tag(path=str(AXE))
    results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    serious = [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
               for v in results["violations"] if v["impact"] in SERIOUS]
    assert not serious, f"{page.url}: {serious}"


def sign_in(page, live_url, token):
    page.goto(f"{live_url}/")
    assert "/sign_in" in page.url
    assert_accessible(page)
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/callouts$"))


def test_an_officer_warns_a_district(new_page, live_url, calling_api, other_api, provider, run_jobs, app):
    from playwright.sync_api import expect

    started = time.monotonic()
    page = new_page()
    sign_in(page, live_url, calling_api.token)
    assert_accessible(page)

    # import the contacts of a CSV file, one refused row among them
    page.get_by_role("link", name="Contacts", exact=True).first.click()
    csv = b"phone,district,name\n+85512345001,Kampot,Sok\n+85512345002,Kampot,Dara\n+85512345003,Kep,Vicheka\nnope,Kep,X\n"
    page.get_by_label("CSV file").set_input_files({"name": "people.csv", "mimeType": "text/csv", "buffer": csv})
    page.get_by_role("button", name="Import").click()
    page.wait_for_url(re.compile(r"/contact_imports/\d+$"))
    run_jobs()
    progress = page.locator("#import-progress")
    expect(progress).to_contain_text("finished")  # the region refreshes itself
    expect(page.get_by_role("link", name="Download the refused rows (CSV)")).to_be_visible()
    assert_accessible(page)
    page.get_by_role("link", name="All contacts").click()
    expect(page.locator("table")).to_contain_text("+85512345003")
    assert_accessible(page)
    page.get_by_role("link", name="+85512345003").click()
    expect(page.locator("main")).to_contain_text("Vicheka")
    assert_accessible(page)

    # a callout over a metadata filter, with a preview before anything is added
    page.get_by_role("link", name="Callouts").first.click()
    page.get_by_label("Name").fill("Flood warning")
    page.get_by_role("button", name="Create the callout").click()
    page.wait_for_url(re.compile(r"/callouts/\d+$"))
    callout_url = page.url
    assert_accessible(page)
    page.locator("#key-1").fill("district")
    page.locator("#value-1").fill("Kampot")
    page.get_by_role("button", name="Preview", exact=True).click()
    page.wait_for_url(re.compile(r"/batch_operations/\d+$"))
    preview = page.locator("table")
    expect(preview).to_contain_text("+85512345001")
    expect(preview).to_contain_text("+85512345002")
    expect(preview).not_to_contain_text("+85512345003")
    assert calling_api.get(f"/api/callouts/{callout_url.rsplit('/', 1)[1]}/callout_participations").get_json() == []
    assert_accessible(page)
    page.get_by_role("button", name="Confirm and run").click()
    run_jobs()
    expect(page.locator("#operation")).to_contain_text("finished")

    # start it, and call the contacts through the fake provider
    page.goto(callout_url)
    page.get_by_role("button", name="Start").click()
    expect(page.locator("h1")).to_contain_text("running")
    page.get_by_label("Call flow URL").fill("https://flows.example/flood.xml")
    page.get_by_label("Caller ID").fill("1294")
    page.get_by_role("button", name="Preview the calls").click()
    expect(page.locator("h2").first).to_contain_text("2 will be affected")
    page.get_by_role("button", name="Confirm and run").click()
    run_jobs()
    page.goto(callout_url)
    page.get_by_role("button", name="Preview queueing the created calls").click()
    expect(page.locator("h2").first).to_contain_text("2 will be affected")
    page.get_by_role("button", name="Confirm and run").click()
    run_jobs()
    assert sorted(call["to"] for call in provider.calls()) == ["+85512345001", "+85512345002"]

    # pause and resume, and see its calls
    page.goto(callout_url)
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("h1")).to_contain_text("paused")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("h1")).to_contain_text("running")
    page.get_by_role("link", name="Phone calls").last.click()
    calls = page.locator("table")
    expect(calls).to_contain_text("+85512345001")
    expect(calls).to_contain_text("at the provider")
    assert_accessible(page)

    # the provider reports one call answered: its page shows the events in order
    call = calling_api.get("/api/phone_calls?q[msisdn]=%2B85512345001").get_json()[0]
    for status in ("ringing", "completed"):
        signed_webhook(app.test_client(), {
            "CallSid": call["remote_call_id"], "AccountSid": PROVIDER_SID, "From": "1294", "To": call["msisdn"],
            "CallStatus": status, "Direction": "outbound-api", "ApiVersion": "2010-04-01", "CallDuration": "12"})
    page.get_by_role("link", name=f"#{call['id']}", exact=True).click()
    expect(page.locator("h1")).to_contain_text("completed")
    statuses = page.locator("table tbody tr td:nth-child(3)").all_inner_texts()
    assert statuses == ["ringing", "completed"]
    assert_accessible(page)

    for path in ("/phone_calls", "/account"):
        page.goto(f"{live_url}{path}")
        assert_accessible(page)

    # sign out: the pages are closed again
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/sign_in$"))
    page.goto(callout_url)
    assert "/sign_in" in page.url

    # another account's token sees nothing of this one
    other = new_page()
    sign_in(other, live_url, other_api.token)
    expect(other.locator("main")).not_to_contain_text("Flood warning")
    other.goto(f"{live_url}/contacts")
    expect(other.locator("main")).not_to_contain_text("+85512345001")
    answer = other.goto(callout_url)
    assert answer.status == 404
    assert_accessible(other)
    print(f"\nthe officer's job in the browser took {time.monotonic() - started:.1f} s")


def report(app, call, status):
    """The provider tells us how a call ended (a signed status callback)."""
    params = {"CallSid": call["remote_call_id"], "AccountSid": PROVIDER_SID, "From": "1294", "To": call["msisdn"],
              "CallStatus": status, "Direction": "outbound-api", "ApiVersion": "2010-04-01", "CallDuration": "9"}
    assert signed_webhook(app.test_client(), params).status_code in (200, 201)


def test_an_officer_runs_a_callout_by_its_call_plan(new_page, live_url, calling_api, provider, run_jobs, deps, app):
    from playwright.sync_api import expect

    from scfm.services import sweeper

    api = calling_api
    for number in ("+85512345001", "+85512345002"):
        api.post("/api/contacts", data={"msisdn": number, "metadata[district]": "Kampot"})
    page = new_page()
    sign_in(page, live_url, api.token)
    page.get_by_label("Name").fill("Storm warning")
    page.get_by_role("button", name="Create the callout").click()
    page.wait_for_url(re.compile(r"/callouts/\d+$"))
    callout_url, callout_id = page.url, int(page.url.rsplit("/", 1)[1])

    # the plan: what the calls say, and a busy number called again at once
    page.get_by_label("Address of the call flow (URL)").fill("https://flows.example/storm.xml")
    page.get_by_label("Number shown to the contacts").fill("1294")
    page.get_by_label("After busy").fill("0")
    page.get_by_role("button", name="Save the call plan").click()
    expect(page.get_by_label("After busy")).to_have_value("0")
    expect(page.get_by_role("button", name="Preview the calls")).to_have_count(0)  # the plan makes the calls
    assert api.get(f"/api/callouts/{callout_id}").get_json()["call_plan"] == {
        "remote_request_params": {"url": "https://flows.example/storm.xml", "method": "POST", "from": "1294"},
        "retries": {"busy": [0]}}

    # its contacts, by a field, after a preview
    page.locator("#key-1").fill("district")
    page.locator("#value-1").fill("Kampot")
    page.get_by_role("button", name="Preview", exact=True).click()
    page.get_by_role("button", name="Confirm and run").click()
    run_jobs()
    expect(page.locator("#operation")).to_contain_text("finished")
    page.goto(callout_url)
    progress = page.locator("#progress-text")
    expect(progress).to_contain_text("0 of 2 contacts done")
    assert_accessible(page)

    # start: the plan calls both; one is busy, the other answers, and the page follows by itself
    page.get_by_role("button", name="Start").click()
    expect(page.locator("h1")).to_contain_text("running")
    run_jobs()  # start ran the plan at once; the dialer dialed both
    calls = {call["msisdn"]: call for call in api.get(f"/api/callouts/{callout_id}/phone_calls").get_json()}
    assert sorted(calls) == ["+85512345001", "+85512345002"]
    report(app, calls["+85512345001"], "busy")
    report(app, calls["+85512345002"], "completed")
    expect(progress).to_contain_text("1 of 2 contacts done (50%)")
    expect(page.locator("#live")).to_contain_text("busy")

    # paused, nothing is called again; resumed, the busy number is
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("h1")).to_contain_text("paused")
    sweeper.sweep(deps.uow, deps.jobs, deps.settings.timings, deps.settings.max_attempts)
    run_jobs()
    assert [call["params"]["To"] for call in provider.created_calls].count("+85512345001") == 1
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("h1")).to_contain_text("running")
    run_jobs()  # resume ran the plan at once: the retry is made and dialed
    assert [call["params"]["To"] for call in provider.created_calls].count("+85512345001") == 2
    retry = [c for c in api.get(f"/api/callouts/{callout_id}/phone_calls").get_json() if c["msisdn"] == "+85512345001"
             and c["status"] != "busy"]
    report(app, retry[0], "completed")
    expect(progress).to_contain_text("Finished: all 2 contacts done")
    expect(page.locator("#live")).not_to_have_attribute("data-refresh", "3")  # it stopped asking
    assert_accessible(page)
    page.get_by_role("link", name="Phone calls").last.click()
    statuses = page.locator("table tbody tr td:nth-child(3)").all_inner_texts()
    assert sorted(statuses) == ["busy", "completed", "completed"]

    # the results, as CSV
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the results (CSV)").click()
    rows = {row["msisdn"]: row for row in csv.DictReader(io.StringIO(Path(download.value.path()).read_text()))}
    assert rows["+85512345001"]["calls"] == "2" and rows["+85512345002"]["calls"] == "1"
    assert rows["+85512345001"]["last_status"] == rows["+85512345002"]["last_status"] == "completed"

    # the list shows it done
    page.get_by_role("link", name="Callouts").first.click()
    row = page.locator("tr", has_text="Storm warning")
    expect(row).to_contain_text("2 of 2")
    expect(row).to_contain_text("finished")
    assert_accessible(page)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/sign_in$"))
