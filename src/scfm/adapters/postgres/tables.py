"""The schema as SQLAlchemy Core tables (the migration creates the same)."""
from __future__ import annotations

from sqlalchemy import (
    BigInteger, Boolean, Column, DateTime, LargeBinary, Float, ForeignKey, Integer, MetaData, SmallInteger, Table, Text,
    func, text,
)
from sqlalchemy.dialects.postgresql import JSONB

from scfm.domain.state_machines import PhoneCallStatus

metadata_obj = MetaData()


def _id():
    return Column("id", BigInteger, primary_key=True)


def _json(name: str):
    return Column(name, JSONB, nullable=False, server_default=text("'{}'::jsonb"))


def _timestamps():
    return [
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ]


def _fk(name: str, target: str, nullable: bool = True, ondelete: str | None = None):
    return Column(name, BigInteger, ForeignKey(f"{target}.id", ondelete=ondelete), nullable=nullable)


accounts = Table(
    "accounts", metadata_obj, _id(), _json("metadata"), _json("settings"),
    Column("twilio_account_sid", Text), Column("twilio_auth_token", Text),
    Column("somleng_account_sid", Text), Column("somleng_auth_token", Text),
    Column("platform_provider_name", Text), Column("somleng_api_host", Text),
    Column("somleng_api_base_url", Text),
    Column("permissions", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("calls_per_second", Float), Column("max_calls_in_flight", Integer),
    Column("call_plan", JSONB),  # the default of its callouts' (migration 0007)
    *_timestamps(),
)

access_tokens = Table(
    "access_tokens", metadata_obj, _id(), _fk("account_id", "accounts", False), _json("metadata"),
    Column("token_digest", Text, nullable=False, unique=True), *_timestamps(),
)

dashboard_sessions = Table(  # migration 0010
    "dashboard_sessions", metadata_obj, _id(), _fk("access_token_id", "access_tokens", False, ondelete="CASCADE"),
    Column("session_digest", Text, nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

contacts = Table(
    "contacts", metadata_obj, _id(), _fk("account_id", "accounts", False),
    Column("msisdn", Text, nullable=False), _json("metadata"), *_timestamps(),
)

callouts = Table(
    "callouts", metadata_obj, _id(), _fk("account_id", "accounts", False),
    Column("status", Text, nullable=False, server_default="initialized"),
    Column("call_flow_logic", Text), _json("metadata"), Column("call_plan", JSONB), *_timestamps(),
)

batch_operations = Table(
    "batch_operations", metadata_obj, _id(), _fk("account_id", "accounts", False),
    _fk("callout_id", "callouts"), Column("type", Text, nullable=False), _json("parameters"),
    Column("status", Text, nullable=False, server_default="preview"), _json("metadata"),
    Column("error_message", Text), Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)), *_timestamps(),
)

callout_participations = Table(
    "callout_participations", metadata_obj, _id(), _fk("account_id", "accounts", False),
    _fk("callout_id", "callouts", False), _fk("contact_id", "contacts", False),
    _fk("callout_population_id", "batch_operations"), Column("msisdn", Text, nullable=False),
    Column("call_flow_logic", Text), _json("metadata"),
    # kept by triggers on phone_calls (migration 0007): its latest call, the calls made, those that dialed
    Column("last_phone_call_id", BigInteger), Column("last_phone_call_status", Text),
    Column("calls_count", Integer, nullable=False, server_default="0"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    # and its latest call's window and duration (migration 0008)
    Column("last_phone_call_waiting_for_window", Boolean, nullable=False, server_default=text("false")),
    Column("last_phone_call_duration", Integer),
    # written by the call plan's runner once no call is left to make
    Column("outcome", Text), Column("finished_at", DateTime(timezone=True)),
    *_timestamps(),
)

phone_calls = Table(
    "phone_calls", metadata_obj, _id(), _fk("account_id", "accounts", False),
    _fk("callout_participation_id", "callout_participations"), _fk("contact_id", "contacts", False),
    _fk("create_batch_operation_id", "batch_operations"), _fk("queue_batch_operation_id", "batch_operations"),
    _fk("queue_remote_fetch_batch_operation_id", "batch_operations"),
    Column("status", Text, nullable=False, server_default=PhoneCallStatus.CREATED.value), Column("msisdn", Text, nullable=False),
    Column("remote_call_id", Text), Column("remote_status", Text),
    Column("remote_direction", Text), Column("remote_error_message", Text),
    _json("remote_response"), _json("remote_request_params"), _json("remote_queue_response"),
    Column("call_flow_logic", Text), Column("remotely_queued_at", DateTime(timezone=True)),
    Column("duration", Integer), _json("metadata"),
    # dialing bookkeeping: when the call was queued, claimed by a dialer, and last heard of
    Column("queued_at", DateTime(timezone=True)), Column("dial_claimed_at", DateTime(timezone=True)),
    Column("dial_attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("remote_status_updated_at", DateTime(timezone=True)),
    Column("reconcile_after", DateTime(timezone=True)),  # an unknown dial outcome: ask the provider then
    Column("remote_fetch_queued_at", DateTime(timezone=True)),  # when the sweeper last asked for a fetch
    Column("waiting_for_window", Boolean, nullable=False, server_default=text("false")),  # put back until it opens
    *_timestamps(),
)

# Each provider account SID names one account, in either column (kept by a trigger on accounts: migration 0004)
provider_account_sids = Table(
    "provider_account_sids", metadata_obj, Column("sid", Text, primary_key=True),
    _fk("account_id", "accounts", False, ondelete="CASCADE"),
)

remote_phone_call_events = Table(
    "remote_phone_call_events", metadata_obj, _id(), _fk("account_id", "accounts", False),
    _fk("phone_call_id", "phone_calls", False),
    _json("details"), Column("remote_call_id", Text), Column("remote_direction", Text),
    Column("call_flow_logic", Text), _json("metadata"),
    Column("request_digest", LargeBinary),  # of the signed request: a replay is not recorded twice
    *_timestamps(),
)

contact_imports = Table(
    "contact_imports", metadata_obj, _id(), _fk("account_id", "accounts", False),
    _fk("callout_id", "callouts", ondelete="SET NULL"),
    Column("status", Text, nullable=False, server_default="queued"), Column("filename", Text),
    _json("options"), Column("header", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("delimiter", Text, nullable=False, server_default=","),
    *[Column(name, Integer, nullable=False, server_default="0") for name in (
        "rows_total", "rows_read", "rows_created", "rows_updated", "rows_unchanged", "rows_refused", "last_line",
        "attempts")],
    Column("error_message", Text), _json("metadata"),
    Column("started_at", DateTime(timezone=True)), Column("finished_at", DateTime(timezone=True)),
    *_timestamps(),
)

contact_import_errors = Table(
    "contact_import_errors", metadata_obj,
    Column("contact_import_id", BigInteger, ForeignKey("contact_imports.id", ondelete="CASCADE"), primary_key=True),
    Column("line", Integer, primary_key=True), Column("cells", JSONB, nullable=False),
    Column("reason", Text, nullable=False),
)


# Counters of callout statistics, kept by statement triggers on callout_participations (migration 0008); each
# key has a few shards (by the writing backend), summed when read.
def _counter(name: str, key: Column, *counts: str) -> Table:
    return Table(
        name, metadata_obj,
        Column("callout_id", BigInteger, ForeignKey("callouts.id", ondelete="CASCADE"), primary_key=True),
        key, Column("shard", SmallInteger, primary_key=True),
        *[Column(count, BigInteger, nullable=False, server_default="0") for count in counts],
    )


# participations, calls made and attempts per raw state ("outcome:busy", "call:queued", "window:queued", "none")
callout_participation_counters = _counter(
    "callout_participation_counters", Column("state", Text, primary_key=True), "participations", "calls", "attempts")
# the participations whose latest call was answered, by its duration in whole seconds
callout_duration_counters = _counter(
    "callout_duration_counters", Column("seconds", Integer, primary_key=True), "participations")
# the attempts (calls that reached the provider) made in each minute
callout_minute_counters = _counter(
    "callout_minute_counters", Column("minute", DateTime(timezone=True), primary_key=True), "attempts")
