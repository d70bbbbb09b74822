"""Use cases of phone calls: create, update, list, delete, and the queue / queue_remote_fetch events."""
from __future__ import annotations

from typing import Any

from scfm.domain.call_flow_logic import CallFlowRegistry
from scfm.domain.clock import Clock, utc_now
from scfm.domain.errors import ValidationFailed
from scfm.domain.filters import PHONE_CALL_FILTERS
from scfm.domain.model import PhoneCall, stored
from scfm.domain.ports import JobQueue, UnitOfWork, Within
from scfm.domain.provider import validate_remote_request_params
from scfm.domain.state_machines import PHONE_CALL_USER_EVENTS
from scfm.services.common import Page, PageRequest, apply_attributes, list_page


def create_phone_call(uow: UnitOfWork, call_flows: CallFlowRegistry, participation_id: int,
                      params: dict[str, Any]) -> PhoneCall:
    with uow:
        participation = uow.callout_participations.get(participation_id)
        call = PhoneCall(
            account_id=participation.account_id, callout_participation_id=participation.id,
            contact_id=participation.contact_id, msisdn=participation.msisdn,
            remote_request_params=validate_remote_request_params(params.get("remote_request_params")),
        )
        if params.get("msisdn") in (None, ""):
            params.pop("msisdn", None)
        apply_attributes(call, params, call_flows)
        call = uow.phone_calls.add(call)
        uow.commit()
    return call


def update_phone_call(uow: UnitOfWork, call_flows: CallFlowRegistry, phone_call_id: int,
                      params: dict[str, Any]) -> PhoneCall:
    with uow:
        call = uow.phone_calls.get(phone_call_id, for_update=True)
        call.ensure_editable(set(params) & {"msisdn", "call_flow_logic", "remote_request_params"})
        apply_attributes(call, params, call_flows)
        if "remote_request_params" in params:
            call.remote_request_params = validate_remote_request_params(params["remote_request_params"])
        call = uow.phone_calls.save(call)
        uow.commit()
    return call


def get_phone_call(uow: UnitOfWork, phone_call_id: int) -> PhoneCall:
    with uow:
        return uow.phone_calls.get(phone_call_id)


def list_phone_calls(uow: UnitOfWork, q: Any, paging: PageRequest, participation_id: int | None = None,
                     contact_id: int | None = None, callout_id: int | None = None) -> Page:
    with uow:
        repo = uow.phone_calls
        within = []
        if participation_id is not None:
            within.append(Within.of(uow.callout_participations.get(participation_id)))
        if contact_id is not None:
            within.append(Within.of(uow.contacts.get(contact_id)))
        if callout_id is not None:
            within.append(Within.of(uow.callouts.get(callout_id)))
        return list_page(repo, PHONE_CALL_FILTERS, q, paging, within)


def delete_phone_call(uow: UnitOfWork, phone_call_id: int) -> None:
    with uow:
        call = uow.phone_calls.get(phone_call_id, for_update=True)
        call.ensure_deletable()
        uow.phone_calls.remove(call)
        uow.commit()


def fire_phone_call_event(uow: UnitOfWork, jobs: JobQueue, phone_call_id: int, event: str,
                          clock: Clock = utc_now) -> PhoneCall:
    """`queue` hands the call to the dialer, `queue_remote_fetch` asks for its status; both after commit."""
    if event not in PHONE_CALL_USER_EVENTS:
        raise ValidationFailed.on("event", "is not included in the list")
    with uow:
        call = uow.phone_calls.get(phone_call_id, for_update=True)
        call.fire(event)
        if event == "queue":
            call.mark_queued(clock())
        call = uow.phone_calls.save(call)
        uow.commit()
    if event == "queue":
        jobs.dial_due(stored(call.account_id))
    else:
        jobs.fetch_remote_call(stored(call.id))
    return call
