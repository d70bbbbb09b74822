"""Use cases of batch operations: manage them, preview them, and run them in a worker."""
from __future__ import annotations

from typing import Any

import logging

from scfm.domain import batch_operation as bo
from scfm.domain.errors import DeleteRefused, NotFound, ValidationFailed
from scfm.domain.filters import BATCH_OPERATION_FILTERS
from scfm.domain.model import BatchOperation, stored
from scfm.domain.ports import JobQueue, UnitOfWork, Within
from scfm.domain.state_machines import BATCH_OPERATION_USER_EVENTS, BatchOperationStatus
from scfm.services.common import Page, PageRequest, apply_metadata, list_page

log = logging.getLogger(__name__)


def _check_preview(uow: UnitOfWork, operation: BatchOperation, plan: bo.Plan) -> None:
    if operation.type in bo.PHONE_CALL_TYPES and not plan.skip_validate_preview_presence:
        if uow.batches.preview_is_empty(operation, plan):
            raise ValidationFailed.on("preview", "can't be blank")


def create_batch_operation(uow: UnitOfWork, account_id: int, params: dict[str, Any],
                           callout_id: int | None = None) -> BatchOperation:
    type_ = bo.validate_type(params.get("type"))
    parameters = params.get("parameters") or {}
    plan = bo.plan(type_, parameters)
    with uow:
        if callout_id is None and params.get("callout_id") not in (None, ""):
            callout = uow.callouts.find(params["callout_id"])
            if callout is None:
                raise ValidationFailed.on("callout", "must exist")
            callout_id = callout.id
        elif callout_id is not None:
            callout_id = uow.callouts.get(callout_id).id
        if type_ == bo.CALLOUT_POPULATION and callout_id is None:
            raise ValidationFailed.on("callout", "must exist")
        operation = BatchOperation(account_id=account_id, callout_id=callout_id, type=type_, parameters=parameters)
        apply_metadata(operation, params)
        _check_preview(uow, operation, plan)
        operation = uow.batch_operations.add(operation)
        uow.commit()
    return operation


def update_batch_operation(uow: UnitOfWork, operation_id: int, params: dict[str, Any]) -> BatchOperation:
    with uow:
        operation = uow.batch_operations.get(operation_id, for_update=True)
        if "type" in params and params["type"] != operation.type:
            raise ValidationFailed.on("type", "cannot be changed")
        apply_metadata(operation, params)
        if "parameters" in params:
            if operation.status in (BatchOperationStatus.QUEUED.value, BatchOperationStatus.RUNNING.value):
                raise ValidationFailed.on("parameters", f"cannot be changed when status is {operation.status}")
            operation.parameters = params["parameters"] or {}
            _check_preview(uow, operation, bo.plan(stored(operation.type), operation.parameters))
        operation = uow.batch_operations.save(operation)
        uow.commit()
    return operation


def get_batch_operation(uow: UnitOfWork, operation_id: int) -> BatchOperation:
    with uow:
        return uow.batch_operations.get(operation_id)


def list_batch_operations(uow: UnitOfWork, q: Any, paging: PageRequest, callout_id: int | None = None) -> Page:
    with uow:
        repo = uow.batch_operations
        within = [Within.of(uow.callouts.get(callout_id))] if callout_id is not None else []
        return list_page(repo, BATCH_OPERATION_FILTERS, q, paging, within)


def delete_batch_operation(uow: UnitOfWork, operation_id: int) -> None:
    with uow:
        operation = uow.batch_operations.get(operation_id, for_update=True)
        if operation.status in (BatchOperationStatus.QUEUED.value, BatchOperationStatus.RUNNING.value):
            raise DeleteRefused(f"status is {operation.status}")
        if uow.batch_operations.has_dependents(stored(operation.id)):
            raise DeleteRefused("dependent callout participations or phone calls exist")
        uow.batch_operations.remove(operation)
        uow.commit()


def fire_batch_operation_event(uow: UnitOfWork, jobs: JobQueue, operation_id: int, event: str) -> BatchOperation:
    if event not in BATCH_OPERATION_USER_EVENTS:
        raise ValidationFailed.on("event", "is not included in the list")
    with uow:
        operation = uow.batch_operations.get(operation_id, for_update=True)
        operation.fire(event)
        operation.error_message = None
        operation = uow.batch_operations.save(operation)
        uow.commit()
    jobs.run_batch_operation(stored(operation.id))
    return operation


def preview(uow: UnitOfWork, operation_id: int, kind: str, paging: PageRequest) -> Page:
    with uow:
        operation = uow.batch_operations.get(operation_id)
        if kind not in bo.PREVIEWS[stored(operation.type)]:
            raise NotFound("preview")
        plan = bo.plan(stored(operation.type), operation.parameters)
        items, total, estimated = uow.batches.preview(operation, plan, kind, paging.page, paging.per_page)
    return Page(items, total, paging.page, paging.per_page, estimated)


def results(uow: UnitOfWork, operation_id: int, kind: str, paging: PageRequest) -> Page:
    with uow:
        operation = uow.batch_operations.get(operation_id)
        if kind not in bo.RESULTS[stored(operation.type)]:
            raise NotFound("results")
        items, total, estimated = uow.batches.results(operation, kind, paging.page, paging.per_page)
    return Page(items, total, paging.page, paging.per_page, estimated)


def run(uow: UnitOfWork, jobs: JobQueue, operation_id: int) -> str:
    """Run a queued operation once: a second delivery, or a concurrent one, finds it finished and stops."""
    with uow:
        operation = uow.batch_operations.find(operation_id, for_update=True)  # one run at a time
        if operation is None:
            return "missing"
        if operation.status == BatchOperationStatus.QUEUED.value:
            operation.fire("start")
        elif operation.status != BatchOperationStatus.RUNNING.value:
            return "skipped"  # finished already, or back in preview
        uow.batch_operations.save(operation)
        uow.batch_operations.mark_started(stored(operation.id))
        uow.commit()
    try:
        with uow:
            operation = uow.batch_operations.get(operation_id, for_update=True)
            if operation.status != BatchOperationStatus.RUNNING.value:
                return "skipped"
            plan = bo.plan(stored(operation.type), operation.parameters)
            follow_up = uow.batches.run(operation, plan)
            operation.fire("finish")
            operation.error_message = None
            uow.batch_operations.save(operation)
            uow.batch_operations.mark_finished(stored(operation.id))
            uow.commit()
    except Exception as error:
        log.exception("batch operation %s failed", operation_id)
        with uow:
            uow.batch_operations.record_error(operation_id, f"{type(error).__name__}: {error}")
            uow.commit()
        raise
    # fresh planner statistics after rows were made, or calls queued (their status and next attempt: else the
    # dialer's claim is planned for calls that are all still `created`)
    if operation.type in (bo.CALLOUT_POPULATION, bo.PHONE_CALL_CREATE) or (
            follow_up and operation.type == bo.PHONE_CALL_QUEUE):
        with uow:
            uow.batches.analyze(operation)
            uow.commit()
    if follow_up and operation.type == bo.PHONE_CALL_QUEUE:
        jobs.dial_due(stored(operation.account_id))
    elif follow_up:
        jobs.fetch_remote_calls(follow_up)
    return "finished"
