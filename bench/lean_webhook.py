"""A candidate fix of the webhook's cost, for `python -m bench webhook` to serve under gunicorn
(`gunicorn 'bench.lean_webhook:create_app()'`); src/ is not touched, and importing this module patches nothing.

The status callback of a known call in one transaction of four statements on one connection, no pre-ping:

  SELECT the account by its sid                     (as now)
  SELECT the call, its participation's and callout's metadata and call flow logic ... FOR UPDATE OF the call
  UPDATE the call's changed columns                 (no savepoint, no SELECT of it again)
  INSERT the event RETURNING id                     (no savepoint, no SELECT of it again)

instead of two transactions of 15 statements (and two pre-pings and a rollback). The rules are the app's own
(scfm.services.remote_events: _apply_report, the call flow's answer, the metadata merge); anything else (a
callback that adopts a call, an inbound call, an error) goes to the app's handler as it is.
"""
from __future__ import annotations


def lean_handle_webhook(original):
    from sqlalchemy import func, insert, select, update

    from scfm.adapters.postgres import tables as t
    from scfm.domain.call_flow_logic import CallFlowRequest
    from scfm.domain.model import PhoneCall, RemotePhoneCallEvent
    from scfm.domain.provider import webhook_auth_token
    from scfm.domain.values import MergeMode, merge_metadata
    from scfm.services import remote_events as ev

    pc, p, c = t.phone_calls, t.callout_participations, t.callouts
    known = set(PhoneCall.__dataclass_fields__)
    query = (
        select(pc, func.coalesce(p.c.call_flow_logic, c.c.call_flow_logic).label("inherited_call_flow_logic"),
               p.c.metadata.label("participation_metadata"), c.c.metadata.label("callout_metadata"))
        .select_from(pc.outerjoin(p, p.c.id == pc.c.callout_participation_id).outerjoin(c, c.c.id == p.c.callout_id))
    )

    def handle_webhook(uow_for, call_flows, provider_defaults, validate_signature, url, params, signature,
                       our_phone_call_id=None):
        account_sid = params.get("AccountSid")
        if not account_sid:
            return original(uow_for, call_flows, provider_defaults, validate_signature, url, params, signature,
                            our_phone_call_id)
        with uow_for(None) as uow:
            account = uow.accounts.by_provider_account_sid(account_sid)
            token = webhook_auth_token(account, account_sid, provider_defaults) if account else None
            if not token or not validate_signature(token, url, params, signature or ""):
                raise ev.Forbidden("bad signature")
            details = {key: (values if len(values) > 1 else values[0]) for key, values in ev._lists(params).items()}
            call_sid = details.get("CallSid")
            row = call_sid and uow.conn.execute(
                query.where(pc.c.account_id == account.id, pc.c.remote_call_id == call_sid).with_for_update(of=pc)
            ).first()
            if row:
                data = row._mapping
                call = PhoneCall(**{key: value for key, value in data.items() if key in known})
                remote_status = (details.get("CallStatus") or "").lower() or None
                fields = ev._apply_report(call, details, remote_status, details.get("Direction"))
                name = call.effective_call_flow_logic
                if name and not call_flows.is_registered(name):
                    name = None
                context = {**(data["callout_metadata"] or {}), **(data["participation_metadata"] or {}),
                           **call.metadata}
                response = call_flows.get(name).respond(CallFlowRequest(
                    phone_call_id=call.id, msisdn=call.msisdn, direction=call.remote_direction,
                    remote_status=call.remote_status, digits=details.get("Digits"), webhook_url=url,
                    metadata=dict(call.metadata), context_metadata=context, details=details,
                ))
                if response.metadata_updates:
                    call.metadata = merge_metadata(call.metadata, response.metadata_updates, MergeMode.DEEP_MERGE)
                    fields.add("metadata")
                uow.conn.execute(update(pc).where(pc.c.id == call.id).values(
                    updated_at=func.now(), **{name_: getattr(call, name_) for name_ in fields}))
                event = RemotePhoneCallEvent(
                    account_id=account.id, phone_call_id=call.id, details=details, remote_call_id=call_sid,
                    remote_direction=details.get("Direction"), call_flow_logic=name or call_flows.default_name)
                event.id = uow.conn.execute(insert(t.remote_phone_call_events).values(
                    account_id=event.account_id, phone_call_id=event.phone_call_id, details=event.details,
                    remote_call_id=event.remote_call_id, remote_direction=event.remote_direction,
                    call_flow_logic=event.call_flow_logic).returning(t.remote_phone_call_events.c.id)).scalar_one()
                uow.commit()
                return ev.WebhookResult(event, response)
        return original(uow_for, call_flows, provider_defaults, validate_signature, url, params, signature,
                        our_phone_call_id)

    return handle_webhook


def create_app():
    """The app of scfm.entrypoints.wsgi with the lean webhook handler and no pool pre-ping (this process only)."""
    from scfm.bootstrap import bootstrap
    from scfm.entrypoints.app import create_app as create
    from scfm.services import remote_events

    remote_events.handle_webhook = lean_handle_webhook(remote_events.handle_webhook)
    deps = bootstrap()
    deps.engine.pool._pre_ping = False
    return create(deps)
