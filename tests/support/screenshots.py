"""Re-take the README's screenshots of the dashboard: `.venv/bin/python -m tests.support.screenshots`.

Makes a throwaway database scfm_screenshots_<random> on DATABASE_URL's server (and uses REDIS_URL, with a
queue of the same name), an account with made-up contacts, callouts and phone calls, serves the app on a
free port, photographs the main pages in Debian's Chromium (Playwright) into docs/screenshots/, and drops
the database and the queue's keys at the end.
"""
from __future__ import annotations

import logging
import os
import secrets
import sys
import threading
import uuid
from pathlib import Path

from sqlalchemy import text
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1100, "height": 720}
DISTRICTS = ("Kampot", "Kep", "Takeo")
NAMES = ("Sok", "Dara", "Vicheka", "Sophea", "Rithy", "Bopha", "Chenda", "Veasna", "Kosal", "Maly")
CALL_STATUSES = ("completed", "completed", "completed", "busy", "not_answered", "failed", "remotely_queued",
                 "queued")


def seed(deps, app) -> tuple[str, dict]:
    """An account (made by a super admin, as the API's users are) with its data; its token, and the ids of
    what the pages show."""
    from scfm.services import accounts

    _admin, admin_token = accounts.create_super_admin(deps.uow())
    client = app.test_client()
    admin = {"Authorization": f"Bearer {admin_token.token}"}
    account = client.post("/api/accounts", data={"metadata[name]": "Provincial committee"}, headers=admin).get_json()
    token = client.post("/api/access_tokens", data={"account_sid": account["id"]}, headers=admin).get_json()["token"]
    own = {"Authorization": f"Bearer {token}"}

    def callout(name: str, *events: str) -> int:
        made = client.post("/api/callouts", data={"metadata[name]": name}, headers=own).get_json()
        for event in events:
            client.post(f"/api/callouts/{made['id']}/callout_events", data={"event": event}, headers=own)
        return made["id"]

    drill = callout("Evacuation drill", "start", "stop")
    storm = callout("Storm warning: Kep", "start", "pause")
    flood = callout("Flood warning: Kampot", "start")
    callout("Heat wave advice")
    with deps.engine.begin() as conn:
        conn.execute(text("""
            INSERT INTO contacts (account_id, msisdn, metadata)
            SELECT :account, '+8551234' || lpad(i::text, 4, '0'),
                   jsonb_build_object('district', (CAST(:districts AS text[]))[1 + i % 3],
                                      'name', (CAST(:names AS text[]))[1 + i % 10])
            FROM generate_series(1, 240) AS i"""), {"account": account["id"], "districts": list(DISTRICTS),
                                                    "names": list(NAMES)})
        for callout_id, district in ((flood, "Kampot"), (storm, "Kep"), (drill, "Takeo")):
            conn.execute(text("""
                INSERT INTO callout_participations (account_id, callout_id, contact_id, msisdn, metadata)
                SELECT account_id, :callout, id, msisdn, metadata FROM contacts
                WHERE account_id = :account AND metadata->>'district' = :district"""),
                         {"account": account["id"], "callout": callout_id, "district": district})
        conn.execute(text("""
            INSERT INTO phone_calls (account_id, callout_participation_id, contact_id, msisdn, status, duration,
                                     remote_request_params, remote_call_id, remote_status_updated_at, created_at,
                                     updated_at)
            SELECT p.account_id, p.id, p.contact_id, p.msisdn, (CAST(:statuses AS text[]))[1 + p.id % 8],
                   CASE WHEN p.id % 8 < 3 THEN 20 + p.id % 40 END,
                   '{"url": "https://flows.example/flood.xml", "method": "POST", "from": "1294"}',
                   'CA' || md5(p.id::text), now() - make_interval(mins => (p.id % 25)::int),
                   now() - make_interval(mins => (p.id % 25)::int), now()
            FROM callout_participations p WHERE p.callout_id IN (:flood, :drill)"""),
                     {"statuses": list(CALL_STATUSES), "flood": flood, "drill": drill})
        # made-up history: the calls rang out over the last 25 minutes, not in the one of this transaction
        conn.execute(text("DELETE FROM callout_minute_counters WHERE callout_id = :flood"), {"flood": flood})
        conn.execute(text("""
            INSERT INTO callout_minute_counters (callout_id, minute, shard, attempts)
            SELECT :flood, date_trunc('minute', now()) - make_interval(mins => m), 0, 2 + (m * 7) % 5
            FROM generate_series(0, 24) AS m"""), {"flood": flood})
        call = conn.execute(text("""
            SELECT pc.id FROM phone_calls pc JOIN callout_participations p ON p.id = pc.callout_participation_id
            WHERE p.callout_id = :flood AND pc.status = 'completed' ORDER BY pc.id LIMIT 1"""),
                            {"flood": flood}).scalar_one()
        conn.execute(text("""
            INSERT INTO remote_phone_call_events (account_id, phone_call_id, details, remote_call_id, created_at)
            SELECT :account, :call, jsonb_build_object('CallStatus', status, 'CallDuration', '31'),
                   'CA5f8e0c2a9b7d4e6f8a1b3c5d7e9f0a1b', now() - make_interval(secs => 40 - 10 * n)
            FROM unnest(ARRAY['queued', 'ringing', 'in-progress', 'completed']) WITH ORDINALITY AS s(status, n)"""),
                     {"account": account["id"], "call": call})
    return token, {"flood": flood, "call": call}


def shots(ids: dict) -> list[tuple[str, str]]:
    return [
        ("callouts", "/callouts"),
        ("callout", f"/callouts/{ids['flood']}"),
        ("contacts", "/contacts?key=district&value=Kampot"),
        ("phone_call", f"/phone_calls/{ids['call']}"),
    ]


def photograph(base: str, token: str, ids: dict) -> None:
    from playwright.sync_api import sync_playwright

    FOLDER.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport=VIEWPORT, locale="en-US", timezone_id="Asia/Phnom_Penh")
            page.goto(f"{base}/sign_in")
            page.get_by_label("Access token").fill(token)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/callouts")
            for name, path in shots(ids):
                page.goto(base + path)
                page.screenshot(path=str(FOLDER / f"{name}.png"))
                print(f"{FOLDER.relative_to(ROOT) / name}.png: {(FOLDER / f'{name}.png').stat().st_size // 1024} KB")
        finally:
            browser.close()


def main() -> int:
    from scfm import bootstrap as bootstrap_module
    from scfm.adapters.postgres import db
    from scfm.entrypoints.app import create_app

    server_url = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    name = f"scfm_screenshots_{uuid.uuid4().hex[:10]}"
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    database_url = db.create_database(server_url, name)
    os.environ.update(DATABASE_URL=database_url, REDIS_URL=redis_url, SCFM_QUEUE=name,
                      SCFM_SECRET_KEY=secrets.token_urlsafe(32), PUBLIC_URL="http://127.0.0.1")
    deps = bootstrap_module.bootstrap()
    try:
        db.upgrade(deps.engine)
        app = create_app(deps)
        token, ids = seed(deps, app)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            photograph(f"http://127.0.0.1:{server.server_port}", token, ids)
        finally:
            server.shutdown()
            thread.join()
    finally:
        keys = [f"rq:job:{job_id}" for job_id in deps.queue.get_job_ids()] + list(deps.redis.scan_iter(f"*{name}*"))
        if keys:
            deps.redis.delete(*keys)
        deps.engine.dispose()
        db.drop_database(server_url, name)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
