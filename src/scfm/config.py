"""Settings, read once from the environment."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from scfm.domain.call_plan import DEFAULT_MAX_ATTEMPTS_CAP
from scfm.domain.dialing import Timings
from scfm.domain.provider import (
    ALLOWED_URLS, MAX_CALLS_IN_FLIGHT, MAX_CALLS_PER_SECOND, SERVER_CALLS_PER_SECOND, parse_allowed_urls,
)


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: str = ".scfm"
    host: str = "127.0.0.1"
    port: int = 3000
    public_url: str | None = None  # the base URL the provider sees: signatures are checked against it
    trust_proxy: bool = False
    queue_name: str = "scfm"
    registered_call_flow_logic: str | None = None
    default_call_flow_logic: str | None = None
    # the provider's environment (PLATFORM_PROVIDER, TWILIO_*, SOMLENG_*) and the operator's limits on what
    # tenants may choose (ALLOWED_URLS, MAX_CALLS_PER_SECOND, MAX_CALLS_IN_FLIGHT of scfm.domain.provider)
    provider: dict = field(default_factory=dict)
    max_body_bytes: int = 1024 * 1024
    max_import_bytes: int = 256 * 1024 * 1024  # POST /api/contact_imports only
    job_timeout_seconds: int = 600
    provider_timeout_seconds: float = 15.0
    timings: Timings = field(default_factory=Timings)
    sweep_interval_seconds: float = 10.0
    # signs the dashboard's session cookie; unset, one is kept in data_dir (scfm.entrypoints.dashboard)
    secret_key: str | None = field(default=None, repr=False)
    max_attempts: int = DEFAULT_MAX_ATTEMPTS_CAP  # SCFM_MAX_ATTEMPTS: no call plan calls a participation more

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        provider_keys = (
            "PLATFORM_PROVIDER", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "SOMLENG_ACCOUNT_SID",
            "SOMLENG_AUTH_TOKEN", "SOMLENG_CLIENT_REST_API_HOST", "SOMLENG_CLIENT_REST_API_BASE_URL",
            "TWILIO_API_BASE_URL",
        )
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            redis_url=env.get("REDIS_URL") or None,
            data_dir=env.get("SCFM_DATA_DIR") or ".scfm",
            host=env.get("HOST") or "127.0.0.1",
            port=int(env.get("PORT") or 3000),
            public_url=(env.get("PUBLIC_URL") or "").rstrip("/") or None,
            trust_proxy=(env.get("TRUST_PROXY") or "").lower() in {"1", "true", "yes"},
            queue_name=env.get("SCFM_QUEUE") or "scfm",
            registered_call_flow_logic=env.get("REGISTERED_CALL_FLOW_LOGIC") or None,
            default_call_flow_logic=env.get("DEFAULT_CALL_FLOW_LOGIC") or None,
            provider={
                **{key: env[key] for key in provider_keys if env.get(key)},
                ALLOWED_URLS: parse_allowed_urls(env.get(ALLOWED_URLS)),
                **({MAX_CALLS_PER_SECOND: _positive(env, MAX_CALLS_PER_SECOND, float)}
                   if env.get(MAX_CALLS_PER_SECOND) else {}),
                **({MAX_CALLS_IN_FLIGHT: _positive(env, MAX_CALLS_IN_FLIGHT, int)}
                   if env.get(MAX_CALLS_IN_FLIGHT) else {}),
                **({SERVER_CALLS_PER_SECOND: _positive(env, SERVER_CALLS_PER_SECOND, float)}
                   if env.get(SERVER_CALLS_PER_SECOND) else {}),
            },
            provider_timeout_seconds=float(env.get("PROVIDER_TIMEOUT_SECONDS") or 15),
            timings=Timings(**{
                f.name: float(env[f"SCFM_{f.name.upper()}"]) for f in fields(Timings)
                if env.get(f"SCFM_{f.name.upper()}")
            }),
            sweep_interval_seconds=float(env.get("SCFM_SWEEP_INTERVAL") or 10),
            secret_key=env.get("SCFM_SECRET_KEY") or None,
            max_attempts=_positive(env, "SCFM_MAX_ATTEMPTS", int) if env.get("SCFM_MAX_ATTEMPTS")
            else DEFAULT_MAX_ATTEMPTS_CAP,
            max_import_bytes=int(env.get("SCFM_MAX_IMPORT_BYTES") or 256 * 1024 * 1024),
        )


def _positive(env, name: str, kind):
    value = kind(env[name])
    if not value > 0:
        raise ValueError(f"{name} must be greater than 0")
    return value
