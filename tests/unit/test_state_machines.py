"""Every allowed and forbidden transition of callouts, batch operations and phone calls."""
import pytest

from scfm.domain import state_machines as sm
from scfm.domain.errors import EventNotAllowed
from scfm.domain.model import BatchOperation, Callout, PhoneCall

CALLOUT_ALLOWED = {
    ("initialized", "start"): "running",
    ("running", "pause"): "paused",
    ("paused", "resume"): "running",
    ("stopped", "resume"): "running",
    ("running", "stop"): "stopped",
    ("paused", "stop"): "stopped",
}
BATCH_ALLOWED = {
    ("preview", "queue"): "queued",
    ("queued", "start"): "running",
    ("running", "finish"): "finished",
    ("finished", "requeue"): "queued",
}
PHONE_CALL_ALLOWED = {
    ("created", "queue"): "queued",
    ("queued", "remotely_queue"): "remotely_queued",
    ("queued", "error"): "errored",
    ("remotely_queued", "queue_remote_fetch"): "remote_fetch_queued",
    ("in_progress", "queue_remote_fetch"): "remote_fetch_queued",
}


def _pairs(statuses, events):
    return [(s.value, e) for s in statuses for e in events]


@pytest.mark.parametrize("status,event", _pairs(sm.CalloutStatus, sm.CALLOUT_TRANSITIONS))
def test_callout_events(status, event):
    callout = Callout(status=status)
    if (status, event) in CALLOUT_ALLOWED:
        callout.fire(event)
        assert callout.status == CALLOUT_ALLOWED[(status, event)]
    else:
        with pytest.raises(EventNotAllowed) as error:
            callout.fire(event)
        assert error.value.errors == {"event": ["is not included in the list"]}
        assert callout.status == status


@pytest.mark.parametrize("status,event", _pairs(sm.BatchOperationStatus, sm.BATCH_OPERATION_TRANSITIONS))
def test_batch_operation_events(status, event):
    operation = BatchOperation(status=status)
    if (status, event) in BATCH_ALLOWED:
        operation.fire(event)
        assert operation.status == BATCH_ALLOWED[(status, event)]
    else:
        with pytest.raises(EventNotAllowed):
            operation.fire(event)
        assert operation.status == status


@pytest.mark.parametrize("status,event", _pairs(sm.PhoneCallStatus, sm.PHONE_CALL_TRANSITIONS))
def test_phone_call_events(status, event):
    call = PhoneCall(status=status)
    if (status, event) in PHONE_CALL_ALLOWED:
        call.fire(event)
        assert call.status == PHONE_CALL_ALLOWED[(status, event)]
    else:
        with pytest.raises(EventNotAllowed):
            call.fire(event)
        assert call.status == status


def test_an_unknown_event_is_not_allowed():
    with pytest.raises(EventNotAllowed):
        Callout().fire("explode")


@pytest.mark.parametrize("remote,expected", [
    ("queued", "remotely_queued"), ("ringing", "in_progress"), ("in-progress", "in_progress"),
    ("completed", "completed"), ("busy", "busy"), ("failed", "failed"), ("no-answer", "not_answered"),
    ("canceled", "canceled"),
])
def test_provider_statuses_map_to_local_statuses(remote, expected):
    call = PhoneCall(status="remotely_queued")
    call.apply_remote_status(remote, fetched=False)
    assert call.status == expected
    assert call.remote_status == remote


def test_a_fetch_that_finds_the_call_still_queued_returns_it_to_remotely_queued():
    call = PhoneCall(status="remote_fetch_queued")
    call.apply_remote_status("queued", fetched=True)
    assert call.status == "remotely_queued"


def test_a_fetch_of_an_in_progress_call_returns_it_to_in_progress():
    call = PhoneCall(status="remote_fetch_queued")
    call.apply_remote_status("in-progress", fetched=True)
    assert call.status == "in_progress"


@pytest.mark.parametrize("terminal", sorted(s.value for s in sm.TERMINAL_PHONE_CALL_STATUSES))
@pytest.mark.parametrize("late", ["queued", "ringing", "in-progress", "completed", "busy", "no-answer"])
def test_a_late_or_duplicate_report_never_moves_a_finished_call(terminal, late):
    call = PhoneCall(status=terminal)
    call.apply_remote_status(late, fetched=False)
    assert call.status == terminal
    assert call.remote_status == late  # the newest information is still kept


@pytest.mark.parametrize("final", sorted(sm.FINAL_REMOTE_STATUSES))
@pytest.mark.parametrize("late", ["queued", "ringing", "in-progress", "completed", "busy", None])
@pytest.mark.parametrize("fetched", [False, True])
def test_remote_status_never_moves_back_from_a_final_one(final, late, fetched):
    call = PhoneCall(status="in_progress")
    call.apply_remote_status(final, fetched=False)
    call.apply_remote_status(late, fetched=fetched)
    assert call.remote_status == final
    assert call.status == sm.REMOTE_STATUS_MAP[final].value


def test_status_only_moves_forward():
    call = PhoneCall(status="in_progress")
    call.apply_remote_status("ringing", fetched=False)
    assert call.status == "in_progress"
    call.apply_remote_status("queued", fetched=False)
    assert call.status == "in_progress"


def test_an_unknown_provider_status_changes_nothing():
    call = PhoneCall(status="remotely_queued")
    call.apply_remote_status("sleeping", fetched=False)
    assert call.status == "remotely_queued"


def test_a_created_call_is_not_moved_by_provider_reports():
    call = PhoneCall(status="created")
    call.apply_remote_status("completed", fetched=False)
    assert call.status == "created"


def test_only_created_calls_can_be_deleted_or_change_what_is_dialed():
    PhoneCall(status="created").ensure_deletable()
    PhoneCall(status="created").ensure_editable({"msisdn"})
    with pytest.raises(EventNotAllowed.__mro__[1]):
        PhoneCall(status="queued").ensure_deletable()
    with pytest.raises(EventNotAllowed.__mro__[1]):
        PhoneCall(status="queued").ensure_editable({"remote_request_params"})
    PhoneCall(status="queued").ensure_editable({"metadata"})
