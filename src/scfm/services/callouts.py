"""Use cases of callouts and their participations."""
from __future__ import annotations

from typing import Any

from scfm.domain.call_flow_logic import CallFlowRegistry
from scfm.domain.call_plan import DEFAULT_MAX_ATTEMPTS_CAP, CallPlan
from scfm.domain.errors import DeleteRefused, ValidationFailed
from scfm.domain.filters import CALLOUT_FILTERS, CALLOUT_PARTICIPATION_FILTERS, CONTACT_FILTERS
from scfm.domain.model import Callout, CalloutParticipation, stored
from scfm.domain.state_machines import CalloutStatus
from scfm.domain.ports import JobQueue, UnitOfWork, Within
from scfm.services.common import Page, PageRequest, apply_attributes, list_page


def create_callout(uow: UnitOfWork, call_flows: CallFlowRegistry, account_id: int, params: dict[str, Any],
                   max_attempts: int = DEFAULT_MAX_ATTEMPTS_CAP) -> Callout:
    """`max_attempts`: the operator's cap on a call plan's (SCFM_MAX_ATTEMPTS)."""
    callout = Callout(account_id=account_id)
    apply_attributes(callout, params, call_flows)
    if "call_plan" in params:
        callout.call_plan = CallPlan.normalize(params["call_plan"], max_attempts)
    with uow:
        callout = uow.callouts.add(callout)
        uow.commit()
    return callout


def update_callout(uow: UnitOfWork, call_flows: CallFlowRegistry, callout_id: int, params: dict[str, Any],
                   max_attempts: int = DEFAULT_MAX_ATTEMPTS_CAP) -> Callout:
    """A new call plan acts on the calls not yet made; its participations that ended expired are open again
    (its runner ends them expired again at once unless the new plan's not_after is later)."""
    plan = CallPlan.normalize(params["call_plan"], max_attempts) if "call_plan" in params else None
    with uow:
        callout = uow.callouts.get(callout_id, for_update=True)
        apply_attributes(callout, params, call_flows)
        if "call_plan" in params:
            callout.call_plan = plan
            uow.dial_queue.reopen_expired(stored(callout.id))
        callout = uow.callouts.save(callout)
        uow.commit()
    return callout


def fire_callout_event(uow: UnitOfWork, jobs: JobQueue, callout_id: int, event: str) -> Callout:
    """Pausing or stopping a callout holds its queued calls, and its call plan makes no more; starting or
    resuming hands them back to the dialer, and runs its call plan at once."""
    with uow:
        callout = uow.callouts.get(callout_id, for_update=True)
        callout.fire(event)
        callout = uow.callouts.save(callout)
        uow.commit()
    if callout.status == CalloutStatus.RUNNING.value:
        jobs.run_call_plan(stored(callout.id))
        jobs.dial_due(stored(callout.account_id))
    return callout


def get_callout(uow: UnitOfWork, callout_id: int) -> Callout:
    with uow:
        return uow.callouts.get(callout_id)


def list_callouts(uow: UnitOfWork, q: Any, paging: PageRequest, contact_id: int | None = None) -> Page:
    with uow:
        within = []
        if contact_id is not None:
            within.append(Within.of(uow.contacts.get(contact_id)))
        return list_page(uow.callouts, CALLOUT_FILTERS, q, paging, within)


def delete_callout(uow: UnitOfWork, callout_id: int) -> None:
    with uow:
        callout = uow.callouts.get(callout_id, for_update=True)
        if uow.callouts.has_dependents(stored(callout.id)):
            raise DeleteRefused("dependent callout participations or batch operations exist")
        uow.callouts.remove(callout)
        uow.commit()


# ---------------------------------------------------------------- participations

def create_participation(uow: UnitOfWork, call_flows: CallFlowRegistry, callout_id: int,
                         params: dict[str, Any]) -> CalloutParticipation:
    with uow:
        callout = uow.callouts.get(callout_id)
        contact_id = params.get("contact_id")
        if contact_id in (None, ""):
            raise ValidationFailed.on("contact_id", "can't be blank")
        contact = uow.contacts.find(contact_id)
        if contact is None:
            raise ValidationFailed.on("contact", "must exist")
        participation = CalloutParticipation(
            account_id=callout.account_id, callout_id=callout.id, contact_id=contact.id, msisdn=contact.msisdn)
        if params.get("msisdn") in (None, ""):
            params.pop("msisdn", None)
        apply_attributes(participation, params, call_flows)
        participation = uow.callout_participations.add(participation)
        uow.commit()
    return participation


def update_participation(uow: UnitOfWork, call_flows: CallFlowRegistry, participation_id: int,
                         params: dict[str, Any]) -> CalloutParticipation:
    with uow:
        participation = uow.callout_participations.get(participation_id, for_update=True)
        apply_attributes(participation, params, call_flows)
        participation = uow.callout_participations.save(participation)
        uow.commit()
    return participation


def get_participation(uow: UnitOfWork, participation_id: int) -> CalloutParticipation:
    with uow:
        return uow.callout_participations.get(participation_id)


def list_participations(uow: UnitOfWork, q: Any, paging: PageRequest, callout_id: int | None = None,
                        contact_id: int | None = None) -> Page:
    with uow:
        repo = uow.callout_participations
        within = []
        if callout_id is not None:
            within.append(Within.of(uow.callouts.get(callout_id)))
        if contact_id is not None:
            within.append(Within.of(uow.contacts.get(contact_id)))
        return list_page(repo, CALLOUT_PARTICIPATION_FILTERS, q, paging, within)


def list_callout_contacts(uow: UnitOfWork, callout_id: int, q: Any, paging: PageRequest) -> Page:
    with uow:
        callout = uow.callouts.get(callout_id)
        return list_page(uow.contacts, CONTACT_FILTERS, q, paging, [Within.of(callout)])


def delete_participation(uow: UnitOfWork, participation_id: int) -> None:
    with uow:
        participation = uow.callout_participations.get(participation_id, for_update=True)
        if uow.callout_participations.has_dependents(stored(participation.id)):
            raise DeleteRefused("dependent phone calls exist")
        uow.callout_participations.remove(participation)
        uow.commit()
