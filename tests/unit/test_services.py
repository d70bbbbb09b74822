"""The use cases on a fake unit of work: no server, a clock that is set, and the writes they make."""
from datetime import timedelta

import pytest

from scfm.domain.call_flow_logic import CallFlowRegistry
from scfm.domain.dialing import Timings
from scfm.domain.model import Account, Callout, CalloutParticipation, Contact, PhoneCall
from scfm.domain.errors import NotFound
from scfm.domain.ports import ProviderUnreachable, RemoteCall
from scfm.services import callouts, contacts, phone_calls, remote_events
from scfm.services.dialing import UNKNOWN_OUTCOME, reconcile_unknown_outcome
from scfm.services.remote_events import Forbidden, handle_webhook
from scfm.services.sweeper import sweep
from tests.unit.fakes import T0, FakeJobs, FakeProvider, ProviderReports, UnitsOfWork

SID, TOKEN = "AC" + "1" * 32, "secret"
TIMINGS = Timings()


@pytest.fixture
def uows():
    return UnitsOfWork()


@pytest.fixture
def account(uows):
    return uows.db.insert("accounts", Account(twilio_account_sid=SID, twilio_auth_token=TOKEN))


def a_call(uows, account, **fields):
    return uows.db.insert("phone_calls", PhoneCall(account_id=account.id, msisdn="+85512345678", **fields))


def stored(uows, call):
    return uows.db.get("phone_calls", call.id)


# ---------------------------------------------------------------- the sweeper

def test_the_sweeper_leaves_due_calls_to_the_dialers(uows, account):
    due = a_call(uows, account, status="queued", next_attempt_at=T0)
    later = a_call(uows, account, status="queued", next_attempt_at=T0 + timedelta(minutes=5))
    jobs = FakeJobs()

    report = sweep(uows, jobs, TIMINGS)

    assert jobs.asked == []  # the dialers find due calls in the database themselves
    assert report["enqueued"] == 0 and "dispatched_accounts" not in report
    assert {stored(uows, due).status, stored(uows, later).status} == {"queued"}


def test_a_silent_call_is_fetched_once_per_silence_then_expired(uows, account):
    call = a_call(uows, account, status="remotely_queued", remote_call_id="CA1", remotely_queued_at=T0)
    jobs = FakeJobs()

    uows.clock.advance(TIMINGS.fetch_after_silence + 1)
    assert sweep(uows, jobs, TIMINGS)["fetches"] == 1
    assert stored(uows, call).status == "remote_fetch_queued"
    assert sweep(uows, jobs, TIMINGS)["fetches"] == 0  # asked about already: not again before the next silence

    uows.clock.advance(TIMINGS.expire_after_silence)
    report = sweep(uows, jobs, TIMINGS)
    assert report["expired"] == 1
    assert stored(uows, call).status == "errored"
    assert "No news from the provider for 6 hours" in stored(uows, call).remote_error_message


def test_an_unknown_outcome_is_reconciled_after_its_grace_and_asked_again_later(uows, account):
    a_call(uows, account, status="queued", next_attempt_at=T0, dial_claimed_at=T0, dial_attempts=1)
    jobs = FakeJobs()

    assert sweep(uows, jobs, TIMINGS)["unknown_outcomes"] == 0
    uows.clock.advance(TIMINGS.unknown_outcome_grace + 1)
    assert sweep(uows, jobs, TIMINGS)["unknown_outcomes"] == 1
    assert sweep(uows, jobs, TIMINGS)["unknown_outcomes"] == 0  # not before reconcile_interval
    uows.clock.advance(TIMINGS.reconcile_interval)
    assert sweep(uows, jobs, TIMINGS)["unknown_outcomes"] == 1
    assert [kind for kind, _ in jobs.asked] == ["reconcile_unknown_outcome"] * 2


def test_the_sweeper_works_for_the_whole_server(uows):
    sweep(uows, FakeJobs(), TIMINGS)
    assert uows.made and set(uows.made) == {None}  # its own look, then the call plans' (none here)


# ---------------------------------------------------------------- unknown outcomes

def claimed_long_ago(uows, account):
    call = a_call(uows, account, status="queued", dial_claimed_at=T0, dial_attempts=1, next_attempt_at=T0)
    uows.clock.advance(TIMINGS.unknown_outcome_grace + 1)
    return call


def reconcile(uows, call, provider):
    return reconcile_unknown_outcome(uows, provider, {}, call.id, TIMINGS, clock=uows.clock)


def test_a_claim_the_provider_made_no_call_for_is_dialed_again(uows, account):
    call = claimed_long_ago(uows, account)
    assert reconcile(uows, call, FakeProvider(listed=[])) == "dial again"
    after = stored(uows, call)
    assert (after.status, after.dial_claimed_at, after.dial_attempts) == ("queued", None, 0)


def test_the_call_the_provider_made_for_a_claim_is_adopted(uows, account):
    call = claimed_long_ago(uows, account)
    made = RemoteCall(sid="CA9", status="ringing", direction="outbound-api", duration=None,
                      created_at=T0 + timedelta(seconds=1))
    assert reconcile(uows, call, FakeProvider(listed=[made])) == "adopt"
    after = stored(uows, call)
    assert (after.status, after.remote_call_id, after.remotely_queued_at) == ("in_progress", "CA9", made.created_at)
    assert uows.db.writes == [("save", "phone_calls", call.id, frozenset({
        "remote_call_id", "status", "remote_status", "remotely_queued_at", "remote_status_updated_at",
        "remote_direction"}))]  # remote_queue_response is {} as before: not written


def test_a_claim_within_its_grace_is_left_for_its_status_callback(uows, account):
    call = a_call(uows, account, status="queued", dial_claimed_at=T0, dial_attempts=1)
    provider = FakeProvider()
    assert reconcile(uows, call, provider) == "skipped"
    assert provider.asked == [] and uows.db.writes == []


def test_an_unreachable_provider_is_asked_again_until_the_claim_is_too_old(uows, account):
    call = claimed_long_ago(uows, account)
    provider = FakeProvider(error=ProviderUnreachable("connection refused"))
    assert reconcile(uows, call, provider) == "ask again"
    assert stored(uows, call).status == "queued"

    uows.clock.advance(TIMINGS.expire_after_silence)
    assert reconcile(uows, call, provider) == "error"
    after = stored(uows, call)
    assert after.status == "errored" and after.remote_error_message.startswith(UNKNOWN_OUTCOME)
    assert after.remotely_queued_at == uows.clock()


# ---------------------------------------------------------------- the webhook

def webhook(uows, status, call_sid="CA1", signature=TOKEN, **extra):
    params = {"AccountSid": SID, "CallSid": call_sid, "CallStatus": status, **extra}
    return handle_webhook(uows, CallFlowRegistry(), {}, lambda token, url, p, sig: sig == token,
                          "https://scfm.example/api/remote_phone_call_events", params, signature, clock=uows.clock)


def test_a_callback_moves_the_call_and_writes_exactly_what_changed(uows, account):
    call = a_call(uows, account, status="remotely_queued", remote_call_id="CA1", remotely_queued_at=T0)
    uows.clock.advance(5)

    result = webhook(uows, "ringing")

    assert result.event is not None and result.event.remote_call_id == "CA1"
    after = stored(uows, call)
    assert (after.status, after.remote_status, after.remote_status_updated_at) == ("in_progress", "ringing", uows.clock())
    assert [w for w in uows.db.writes if w[0] == "save"] == [
        ("save", "phone_calls", call.id, frozenset({"status", "remote_status", "remote_status_updated_at"}))]


def test_a_callback_racing_the_dialers_record_of_its_sid_is_recorded(uows, account, monkeypatch):
    """The request looked the call up by its sid just before the dialer committed that sid: the URL's
    phone_call_id then finds the call holding this very sid, which is the call (not a 404)."""
    call = a_call(uows, account, status="queued")
    look_up = ProviderReports.find

    def before_the_dialers_commit(self, account_sid, call_sid):
        target = look_up(self, account_sid, call_sid)
        committed = self.uow.tables["phone_calls"][call.id]  # what the request's next statement reads
        committed.remote_call_id, committed.status = "CA1", "remotely_queued"
        return target

    monkeypatch.setattr(ProviderReports, "find", before_the_dialers_commit)
    params = {"AccountSid": SID, "CallSid": "CA1", "CallStatus": "ringing"}
    result = handle_webhook(uows, CallFlowRegistry(), {}, lambda token, url, p, sig: sig == token,
                            "https://scfm.example/api/remote_phone_call_events", params, TOKEN,
                            our_phone_call_id=str(call.id), clock=uows.clock)

    assert result.event is not None and result.event.phone_call_id == call.id
    assert (stored(uows, call).status, stored(uows, call).remote_call_id) == ("in_progress", "CA1")
    other = a_call(uows, account, status="remotely_queued", remote_call_id="CA2")
    with pytest.raises(NotFound):  # a call holding another sid is not this callback's
        handle_webhook(uows, CallFlowRegistry(), {}, lambda token, url, p, sig: sig == token,
                       "https://scfm.example/api/remote_phone_call_events", {**params, "CallSid": "CA3"}, TOKEN,
                       our_phone_call_id=str(other.id), clock=uows.clock)


def test_a_replayed_callback_records_nothing(uows, account):
    call = a_call(uows, account, status="remotely_queued", remote_call_id="CA1")
    webhook(uows, "completed", CallDuration="12")
    writes = list(uows.db.writes)

    assert webhook(uows, "completed", CallDuration="12").event is None
    assert uows.db.writes == writes
    assert (stored(uows, call).status, stored(uows, call).duration) == ("completed", 12)


def test_a_callback_not_signed_by_the_account_changes_nothing(uows, account):
    a_call(uows, account, status="remotely_queued", remote_call_id="CA1")
    with pytest.raises(Forbidden):
        webhook(uows, "completed", signature="forged")
    assert uows.db.writes == []


def test_a_callback_never_reaches_another_accounts_call(uows, account):
    other = uows.db.insert("accounts", Account(twilio_account_sid="AC" + "2" * 32, twilio_auth_token="x"))
    theirs = a_call(uows, other, status="remotely_queued", remote_call_id="CA1")
    with pytest.raises(Exception, match="phone call"):
        webhook(uows, "completed")
    assert stored(uows, theirs).status == "remotely_queued"


def test_an_inbound_call_becomes_a_call_and_a_contact_of_the_account(uows, account):
    webhook(uows, "ringing", call_sid="CA7", Direction="inbound", From="+855 12 345 678")
    [call] = uows.db.tables["phone_calls"].values()
    [contact] = uows.db.tables["contacts"].values()
    assert (call.account_id, call.remote_call_id, call.status, call.remotely_queued_at) == (
        account.id, "CA7", "in_progress", uows.clock())
    assert (contact.account_id, contact.msisdn) == (account.id, call.msisdn)


# ---------------------------------------------------------------- callouts, contacts and phone calls

def test_queueing_a_call_hands_it_to_the_dialer_at_the_clocks_time(uows, account):
    call = a_call(uows, account)
    jobs = FakeJobs()

    queued = phone_calls.fire_phone_call_event(uows(account.id), jobs, call.id, "queue", clock=uows.clock)

    assert (queued.status, queued.queued_at, queued.next_attempt_at) == ("queued", T0, T0)
    assert uows.db.writes == [("save", "phone_calls", call.id, frozenset({"status", "queued_at", "next_attempt_at"}))]
    assert jobs.asked == [("dial_due", account.id)]


def test_pausing_a_callout_holds_its_calls_and_resuming_hands_them_back(uows, account):
    callout = uows.db.insert("callouts", Callout(account_id=account.id, status="running"))
    jobs = FakeJobs()

    assert callouts.fire_callout_event(uows(account.id), jobs, callout.id, "pause").status == "paused"
    assert jobs.asked == []
    assert callouts.fire_callout_event(uows(account.id), jobs, callout.id, "resume").status == "running"
    assert jobs.asked == [("run_call_plan", callout.id), ("dial_due", account.id)]


def test_updating_a_contact_writes_only_what_the_request_changed(uows, account):
    contact = uows.db.insert("contacts", Contact(account_id=account.id, msisdn="+85512345678", metadata={"a": 1}))

    updated = contacts.update_contact(uows(account.id), contact.id, {"metadata": {"b": 2}, "msisdn": "+85512345678"})

    assert updated.metadata == {"a": 1, "b": 2}
    assert uows.db.writes == [("save", "contacts", contact.id, frozenset({"metadata"}))]


def test_a_unit_of_work_sees_only_its_accounts_records(uows, account):
    other = uows.db.insert("accounts", Account())
    theirs = uows.db.insert("contacts", Contact(account_id=other.id, msisdn="+85599999999"))
    with pytest.raises(Exception, match="contact"):
        contacts.get_contact(uows(account.id), theirs.id)


def test_participations_are_listed_within_their_callout(uows, account):
    first, second = (uows.db.insert("callouts", Callout(account_id=account.id)) for _ in range(2))
    mine = uows.db.insert("callout_participations", CalloutParticipation(account_id=account.id, callout_id=first.id))
    uows.db.insert("callout_participations", CalloutParticipation(account_id=account.id, callout_id=second.id))

    page = callouts.list_participations(uows(account.id), None, callouts.PageRequest(), callout_id=first.id)

    assert [p.id for p in page.items] == [mine.id] and page.total == 1


def test_events_of_a_call_are_listed_within_it(uows, account):
    call = a_call(uows, account, status="remotely_queued", remote_call_id="CA1")
    webhook(uows, "ringing")
    page = remote_events.list_events(uows(account.id), None, remote_events.PageRequest(), phone_call_id=call.id)
    assert page.total == 1


def test_a_paused_callouts_calls_are_not_due(uows, account):
    callout = uows.db.insert("callouts", Callout(account_id=account.id, status="paused"))
    participation = uows.db.insert("callout_participations",
                                   CalloutParticipation(account_id=account.id, callout_id=callout.id))
    a_call(uows, account, status="queued", next_attempt_at=T0, callout_participation_id=participation.id)
    with uows(account.id) as uow:
        assert not uow.phone_calls.due_for_dialing_exists(account.id)
        assert uow.phone_calls.claim_next_due(account.id) is None
    callouts.fire_callout_event(uows(account.id), FakeJobs(), callout.id, "resume")
    with uows(account.id) as uow:
        claimed = uow.phone_calls.claim_next_due(account.id)
        assert claimed is not None and (claimed.dial_claimed_at, claimed.dial_attempts) == (T0, 1)
