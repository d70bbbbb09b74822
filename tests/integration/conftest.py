"""Real PostgreSQL and Redis for integration tests: DATABASE_URL/REDIS_URL when set, else embedded ones.

Each run makes its own database and queue name, and drops them at the end.
"""
from __future__ import annotations

import base64
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from rq.job import Job
from sqlalchemy import text

from scfm.adapters.postgres import db
from scfm import bootstrap as bootstrap_module
from scfm.config import Settings
from scfm.entrypoints.app import create_app
from scfm.services import accounts

RUN_ID = uuid.uuid4().hex[:10]
TABLES = (
    "remote_phone_call_events, phone_calls, callout_participations, batch_operations, callouts, "
    "contacts, access_tokens, accounts, contact_import_errors, contact_imports"
)


@pytest.fixture(scope="session")
def server_urls():
    """The servers' URLs; embedded servers are stopped at the end, whatever happened (a failed test, a
    process a test left behind still connected)."""
    database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if database_url and redis_url:
        yield database_url, redis_url
        return
    from scfm.adapters import embedded

    folder = Path(tempfile.mkdtemp(prefix="scfm-test-"))
    postgres = redis = None
    try:
        if not database_url:
            postgres = embedded.postgres_server(folder, temporary=True)
            database_url = postgres.get_uri()
        if not redis_url:
            redis, redis_url = embedded.start_redis(folder)
        yield database_url, redis_url
    finally:
        if redis is not None:
            embedded.stop_redis(redis)
        if postgres is not None:
            postgres.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


PUBLIC_URL = "http://scfm.test"
REGISTERED = "CallFlowLogic::HelloWorld,CallFlowLogic::PlayMessage,CallFlowLogic::AvfCapom::CapomShort"


@pytest.fixture(scope="session")
def settings(server_urls):
    """The environment of this run, set where jobs (in this process or a worker process) read it."""
    server_url, redis_url = server_urls
    name = f"scfm_test_{RUN_ID}"
    database_url = db.create_database(server_url, name)
    saved = dict(os.environ)
    for key in list(os.environ):
        if key.startswith(("TWILIO_", "SOMLENG_", "PLATFORM_PROVIDER")):
            del os.environ[key]
    os.environ.update(
        DATABASE_URL=database_url, REDIS_URL=redis_url, SCFM_QUEUE=f"scfm_test_{RUN_ID}", PUBLIC_URL=PUBLIC_URL,
        REGISTERED_CALL_FLOW_LOGIC=REGISTERED, PROVIDER_TIMEOUT_SECONDS="3",
        SCFM_ALLOWED_PROVIDER_URLS="http://127.0.0.1:9",  # where nothing listens
        SCFM_SECRET_KEY=f"scfm-test-{RUN_ID}",  # else the dashboard keeps a key in ./.scfm/
    )
    bootstrap_module._deps = None
    yield Settings.from_env()
    os.environ.clear()
    os.environ.update(saved)
    bootstrap_module._deps = None
    db.drop_database(server_url, name)


@pytest.fixture(scope="session")
def deps(settings):
    deps = bootstrap_module.bootstrap()
    db.upgrade(deps.engine)
    yield deps
    keys = list(deps.redis.scan_iter(f"*{settings.queue_name}*"))
    if keys:
        deps.redis.delete(*keys)
    deps.engine.dispose()


@pytest.fixture(autouse=True)
def clean_database(request):
    yield
    if "deps" in request.fixturenames:
        deps = request.getfixturevalue("deps")
        with deps.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
        empty_queue(deps)


def empty_queue(deps) -> None:
    """Remove every job of this run's queue, waiting or not, and the pending markers: with Redis, not through
    RQ, which raises for a job that vanished meanwhile (expired, or deleted by a worker killed midway)."""
    queue = deps.queue
    registries = (queue.scheduled_job_registry, queue.failed_job_registry, queue.started_job_registry,
                  queue.finished_job_registry, queue.deferred_job_registry, queue.canceled_job_registry)
    lists = (queue.key, queue.intermediate_queue_key)
    job_ids = {id_.decode().split(":")[0] for key in lists for id_ in deps.redis.lrange(key, 0, -1)}
    job_ids |= {id_.decode().split(":")[0] for registry in registries for id_ in deps.redis.zrange(registry.key, 0, -1)}
    keys = [*lists, *(registry.key for registry in registries), *(Job.key_for(id_) for id_ in job_ids),
            *deps.redis.scan_iter(f"{deps.settings.queue_name}:pending:*")]
    for start in range(0, len(keys), 1000):
        deps.redis.delete(*keys[start:start + 1000])


@pytest.fixture
def app(deps):
    return create_app(deps)


class Api:
    """The test client as a user of the API: an access token and form-encoded bodies, like curl -d."""

    def __init__(self, client, token: str | None):
        self.client = client
        self.token = token

    def _headers(self, headers=None):
        headers = dict(headers or {})
        if self.token:
            headers.setdefault("Authorization", "Basic " + base64.b64encode(f"{self.token}:".encode()).decode())
        return headers

    def get(self, path, **kwargs):
        return self.client.get(path, headers=self._headers(kwargs.pop("headers", None)), **kwargs)

    def post(self, path, data=None, **kwargs):
        return self.client.post(path, data=data, headers=self._headers(kwargs.pop("headers", None)), **kwargs)

    def patch(self, path, data=None, **kwargs):
        return self.client.patch(path, data=data, headers=self._headers(kwargs.pop("headers", None)), **kwargs)

    def delete(self, path, **kwargs):
        return self.client.delete(path, headers=self._headers(kwargs.pop("headers", None)), **kwargs)


@pytest.fixture
def super_admin_token(deps):
    _account, token = accounts.create_super_admin(deps.uow())
    return token.token


@pytest.fixture
def admin(app, super_admin_token):
    return Api(app.test_client(), super_admin_token)


def new_account_api(app, admin: Api, **fields) -> Api:
    account = admin.post("/api/accounts", data=fields).get_json()
    token = admin.post("/api/access_tokens", data={"account_sid": account["id"]}).get_json()["token"]
    return Api(app.test_client(), token)


@pytest.fixture
def api(app, admin):
    """A user account's token, made as the reference does: a super admin creates both."""
    return new_account_api(app, admin)


@pytest.fixture
def other_api(app, admin):
    return new_account_api(app, admin)


# ---------------------------------------------------------------- calling

PROVIDER_SID = "AC" + "1" * 32
PROVIDER_TOKEN = "provider-auth-token"


def allow_provider_url(monkeypatch, url: str, *settings: Settings) -> None:
    """Let accounts choose `url` as their provider's, as the operator does with SCFM_ALLOWED_PROVIDER_URLS."""
    for each in settings:
        allowed = each.provider.get("SCFM_ALLOWED_PROVIDER_URLS", frozenset())
        monkeypatch.setitem(each.provider, "SCFM_ALLOWED_PROVIDER_URLS", allowed | {url.rstrip("/")})


@pytest.fixture
def provider(settings, deps, monkeypatch):
    from tests.support.fake_provider import FakeProvider

    with FakeProvider({PROVIDER_SID: PROVIDER_TOKEN}, seed=7) as server:
        allow_provider_url(monkeypatch, server.url, settings, deps.settings)  # the tests' Deps of either
        yield server


@pytest.fixture
def calling_api(app, admin, provider):
    """An account whose calls go to the fake provider, as Somleng at its own base URL."""
    return new_account_api(app, admin, platform_provider_name="somleng", somleng_account_sid=PROVIDER_SID,
                           somleng_auth_token=PROVIDER_TOKEN, somleng_api_base_url=provider.url,
                           calls_per_second=50)


@pytest.fixture
def short_grace(deps, monkeypatch) -> float:
    """A two-second grace for a dial's lost answer (15 minutes by default), for the sweeper and its jobs. The
    dialer gives up a slot that comes more than half the grace after its claim: on a busy machine a second's
    grace left too little room, and a call meant to be dialed was put back instead."""
    from dataclasses import replace

    grace = 2.0
    settings = replace(deps.settings, timings=replace(deps.settings.timings, unknown_outcome_grace=grace))
    monkeypatch.setattr(deps, "settings", settings)
    return grace


@pytest.fixture
def run_jobs(deps):
    """Run every job waiting in the queue with a real (burst) RQ worker in this process, then dial every due
    call as a dialer process does."""
    from rq import SimpleWorker

    def run():
        SimpleWorker([deps.queue], connection=deps.redis).work(burst=True)
        deps.dispatcher().drain()

    return run


def dial(deps) -> dict:
    """Dial every due call as a dialer process does: what became of the dials, by outcome."""
    return dict(deps.dispatcher().drain())


def signed_webhook(client, params: dict, token: str = PROVIDER_TOKEN, query: str = "", signature: str | None = None):
    """POST a provider webhook signed as the provider signs it: the public URL plus the sorted form."""
    from twilio.request_validator import RequestValidator

    path = "/api/remote_phone_call_events" + (f"?{query}" if query else "")
    if signature is None:
        signature = RequestValidator(token).compute_signature(PUBLIC_URL + path, params)
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature})
