"""Real PostgreSQL and Redis for integration tests: DATABASE_URL/REDIS_URL when set, else embedded ones.

Each run makes its own database and queue name, and drops them at the end.
"""
from __future__ import annotations

import base64
import os
import tempfile
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from scfm.adapters.postgres import db
from scfm.bootstrap import Deps
from scfm.config import Settings
from scfm.entrypoints.app import create_app
from scfm.services import accounts

RUN_ID = uuid.uuid4().hex[:10]
TABLES = (
    "remote_phone_call_events, phone_calls, callout_participations, batch_operations, callouts, "
    "contacts, access_tokens, accounts"
)


@pytest.fixture(scope="session")
def server_urls():
    database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    keep = []
    if not database_url or not redis_url:
        from scfm.adapters import embedded

        folder = Path(tempfile.mkdtemp(prefix="scfm-test-"))
        if not database_url:
            database_url = embedded.start_postgres(folder)
        if not redis_url:
            client, redis_url = embedded.start_redis(folder)
            keep.append(client)
    yield database_url, redis_url


@pytest.fixture(scope="session")
def settings(server_urls):
    server_url, redis_url = server_urls
    name = f"scfm_test_{RUN_ID}"
    database_url = db.create_database(server_url, name)
    settings = Settings(
        database_url=database_url, redis_url=redis_url, queue_name=f"scfm_test_{RUN_ID}",
        public_url="http://scfm.test", registered_call_flow_logic=(
            "CallFlowLogic::HelloWorld,CallFlowLogic::PlayMessage,CallFlowLogic::AvfCapom::CapomShort"
        ),
    )
    yield settings
    db.drop_database(server_url, name)


@pytest.fixture(scope="session")
def deps(settings):
    deps = Deps(settings)
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
