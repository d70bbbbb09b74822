"""The whole data model: accounts, tokens, contacts, callouts, participations, calls, events, batches.

Revision ID: 0001
Revises:
"""
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIMESTAMPS = """
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
"""

SCHEMA = f"""
CREATE TABLE accounts (
    id bigserial PRIMARY KEY,
    metadata jsonb NOT NULL DEFAULT '{{}}',
    settings jsonb NOT NULL DEFAULT '{{}}',
    twilio_account_sid text,
    twilio_auth_token text,
    somleng_account_sid text,
    somleng_auth_token text,
    platform_provider_name text CHECK (platform_provider_name IN ('twilio', 'somleng')),
    somleng_api_host text,
    somleng_api_base_url text,
    permissions jsonb NOT NULL DEFAULT '[]',
    calls_per_second double precision CHECK (calls_per_second > 0),
    max_calls_in_flight integer CHECK (max_calls_in_flight > 0),
    {TIMESTAMPS}
);
CREATE UNIQUE INDEX index_accounts_on_twilio_account_sid ON accounts (twilio_account_sid)
    WHERE twilio_account_sid IS NOT NULL;
CREATE UNIQUE INDEX index_accounts_on_somleng_account_sid ON accounts (somleng_account_sid)
    WHERE somleng_account_sid IS NOT NULL;

CREATE TABLE access_tokens (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id),
    token_digest text NOT NULL UNIQUE,
    metadata jsonb NOT NULL DEFAULT '{{}}',
    {TIMESTAMPS}
);
CREATE INDEX index_access_tokens_on_account_id ON access_tokens (account_id);

CREATE TABLE contacts (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id),
    msisdn text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{{}}',
    {TIMESTAMPS},
    CONSTRAINT index_contacts_on_account_id_and_msisdn UNIQUE (account_id, msisdn)
);
CREATE INDEX index_contacts_on_metadata ON contacts USING gin (metadata jsonb_path_ops);
CREATE INDEX index_contacts_on_account_id_and_created_at ON contacts (account_id, created_at);

CREATE TABLE callouts (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id),
    status text NOT NULL DEFAULT 'initialized',
    call_flow_logic text,
    metadata jsonb NOT NULL DEFAULT '{{}}',
    {TIMESTAMPS}
);
CREATE INDEX index_callouts_on_account_id ON callouts (account_id);
CREATE INDEX index_callouts_on_metadata ON callouts USING gin (metadata jsonb_path_ops);

CREATE TABLE batch_operations (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id),
    callout_id bigint REFERENCES callouts (id),
    type text NOT NULL,
    parameters jsonb NOT NULL DEFAULT '{{}}',
    status text NOT NULL DEFAULT 'preview',
    metadata jsonb NOT NULL DEFAULT '{{}}',
    error_message text,
    started_at timestamptz,
    finished_at timestamptz,
    {TIMESTAMPS}
);
CREATE INDEX index_batch_operations_on_account_id ON batch_operations (account_id);
CREATE INDEX index_batch_operations_on_callout_id ON batch_operations (callout_id);
CREATE INDEX index_batch_operations_on_status ON batch_operations (status) WHERE status IN ('queued', 'running');

CREATE TABLE callout_participations (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id),
    callout_id bigint NOT NULL REFERENCES callouts (id),
    contact_id bigint NOT NULL REFERENCES contacts (id),
    callout_population_id bigint REFERENCES batch_operations (id),
    msisdn text NOT NULL,
    call_flow_logic text,
    metadata jsonb NOT NULL DEFAULT '{{}}',
    {TIMESTAMPS},
    CONSTRAINT index_callout_participations_on_callout_id_and_contact_id UNIQUE (callout_id, contact_id),
    CONSTRAINT index_callout_participations_on_callout_id_and_msisdn UNIQUE (callout_id, msisdn)
);
CREATE INDEX index_callout_participations_on_account_id ON callout_participations (account_id);
CREATE INDEX index_callout_participations_on_callout_id_and_id ON callout_participations (callout_id, id);
CREATE INDEX index_callout_participations_on_contact_id ON callout_participations (contact_id);
CREATE INDEX index_callout_participations_on_callout_population_id
    ON callout_participations (callout_population_id);
CREATE INDEX index_callout_participations_on_metadata ON callout_participations USING gin (metadata jsonb_path_ops);

CREATE TABLE phone_calls (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id),
    callout_participation_id bigint REFERENCES callout_participations (id),
    contact_id bigint NOT NULL REFERENCES contacts (id),
    create_batch_operation_id bigint REFERENCES batch_operations (id),
    queue_batch_operation_id bigint REFERENCES batch_operations (id),
    queue_remote_fetch_batch_operation_id bigint REFERENCES batch_operations (id),
    status text NOT NULL DEFAULT 'created',
    msisdn text NOT NULL,
    remote_call_id text UNIQUE,
    remote_status text,
    remote_direction text,
    remote_error_message text,
    remote_response jsonb NOT NULL DEFAULT '{{}}',
    remote_request_params jsonb NOT NULL DEFAULT '{{}}',
    remote_queue_response jsonb NOT NULL DEFAULT '{{}}',
    call_flow_logic text,
    remotely_queued_at timestamptz,
    duration integer,
    metadata jsonb NOT NULL DEFAULT '{{}}',
    queued_at timestamptz,
    dial_claimed_at timestamptz,
    dial_attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    remote_status_updated_at timestamptz,
    {TIMESTAMPS}
);
-- one call in flight per participation, whatever the workers do
CREATE UNIQUE INDEX index_phone_calls_one_in_flight_per_participation
    ON phone_calls (callout_participation_id)
    WHERE status IN ('queued', 'remotely_queued', 'remote_fetch_queued', 'in_progress');
CREATE INDEX index_phone_calls_on_account_id_and_status ON phone_calls (account_id, status);
CREATE INDEX index_phone_calls_on_callout_participation_id_and_created_at
    ON phone_calls (callout_participation_id, created_at, id);
CREATE INDEX index_phone_calls_on_contact_id ON phone_calls (contact_id);
CREATE INDEX index_phone_calls_on_create_batch_operation_id ON phone_calls (create_batch_operation_id);
CREATE INDEX index_phone_calls_on_queue_batch_operation_id ON phone_calls (queue_batch_operation_id);
CREATE INDEX index_phone_calls_on_queue_remote_fetch_batch_operation_id
    ON phone_calls (queue_remote_fetch_batch_operation_id);
CREATE INDEX index_phone_calls_due_for_dialing ON phone_calls (account_id, next_attempt_at, id)
    WHERE status = 'queued';
CREATE INDEX index_phone_calls_on_metadata ON phone_calls USING gin (metadata jsonb_path_ops);

CREATE TABLE remote_phone_call_events (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id),
    phone_call_id bigint NOT NULL REFERENCES phone_calls (id),
    details jsonb NOT NULL DEFAULT '{{}}',
    remote_call_id text,
    remote_direction text,
    call_flow_logic text,
    metadata jsonb NOT NULL DEFAULT '{{}}',
    {TIMESTAMPS}
);
CREATE INDEX index_remote_phone_call_events_on_phone_call_id ON remote_phone_call_events (phone_call_id);
CREATE INDEX index_remote_phone_call_events_on_account_id ON remote_phone_call_events (account_id);
"""


def upgrade():
    op.execute(SCHEMA)


def downgrade():
    op.execute(
        "DROP TABLE remote_phone_call_events, phone_calls, callout_participations, batch_operations, "
        "callouts, contacts, access_tokens, accounts"
    )
