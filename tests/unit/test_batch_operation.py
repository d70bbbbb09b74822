"""Batch operation parameters, checked before anything runs."""
import pytest

from scfm.domain import batch_operation as bo
from scfm.domain.dialing import DialingPolicy
from scfm.domain.errors import ValidationFailed
from scfm.domain.filters import Eq, JsonEq
from scfm.domain.model import Account

RRP = {"from": "1234", "url": "https://demo.twilio.com/docs/voice.xml"}


def test_a_population_takes_contact_filters():
    plan = bo.plan(bo.CALLOUT_POPULATION, {"contact_filter_params": {"metadata": {"gender": "f"}}})
    assert plan.filters == {"contact": [JsonEq("metadata", ("gender",), "f")]}


def test_phone_call_create_needs_remote_request_params():
    with pytest.raises(ValidationFailed) as error:
        bo.plan(bo.PHONE_CALL_CREATE, {})
    assert error.value.errors == {"remote_request_params": ["can't be blank"]}
    plan = bo.plan(bo.PHONE_CALL_CREATE, {"remote_request_params": RRP, "limit": "30",
                                          "callout_filter_params": {"status": "running"}})
    assert plan.limit == 30 and plan.remote_request_params == RRP
    assert plan.filters == {"callout": [Eq("status", ("running",))]}


@pytest.mark.parametrize("type_,parameters,errors", [
    (bo.CALLOUT_POPULATION, {"limit": "1"}, {"limit": ["is not a known parameter"]}),
    (bo.CALLOUT_POPULATION, {"contact_filter_params": {"gender": "f"}},
     {"contact_filter_params[gender]": ["is not a valid filter"]}),
    (bo.PHONE_CALL_QUEUE, {"limit": "-1"}, {"limit": ["must be greater than or equal to 0"]}),
    (bo.PHONE_CALL_QUEUE, {"limit": "ten"}, {"limit": ["is not a number"]}),
    (bo.PHONE_CALL_QUEUE, {"skip_validate_preview_presence": "perhaps"},
     {"skip_validate_preview_presence": ["is invalid"]}),
    (bo.PHONE_CALL_QUEUE, {"phone_call_filter_params": {"status": "done"}},
     {"phone_call_filter_params[status]": ["is invalid"]}),
    (bo.PHONE_CALL_QUEUE, {"max": "10", "max_per_period_hours": "0"}, {"max_per_period_hours": ["must be greater than 0 and at most ten years"]}),
    (bo.PHONE_CALL_QUEUE_REMOTE_FETCH, {"max": "1"}, {"max": ["is not a known parameter"]}),
    (bo.PHONE_CALL_QUEUE, "x", {"parameters": ["is invalid"]}),
])
def test_bad_parameters_are_named(type_, parameters, errors):
    with pytest.raises(ValidationFailed) as error:
        bo.plan(type_, parameters)
    assert error.value.errors == errors


def test_values_keep_their_form_but_must_parse():
    plan = bo.plan(bo.PHONE_CALL_QUEUE, {"limit": 5, "skip_validate_preview_presence": "true"})
    assert plan.limit == 5 and plan.skip_validate_preview_presence is True


def test_the_period_cap_limits_what_remains():
    plan = bo.plan(bo.PHONE_CALL_QUEUE, {"limit": "10", "max_per_period": "100", "max_per_period_statuses": "completed"})
    assert plan.period_cap == bo.PeriodCap(100, 24.0, "remotely_queued_at", ("completed",))
    assert bo.acted_on_limit(plan, calls_in_period=95) == 5
    assert bo.acted_on_limit(plan, calls_in_period=0) == 10
    assert bo.acted_on_limit(plan, calls_in_period=500) == 0
    assert bo.acted_on_limit(bo.plan(bo.PHONE_CALL_QUEUE, {}), None) is None


def test_max_and_max_per_period_take_the_smaller():
    plan = bo.plan(bo.PHONE_CALL_QUEUE, {"max": "50", "max_per_period": "80"})
    assert plan.period_cap.max == 50


@pytest.mark.parametrize("type_", [None, "", "BatchOperation::Nope"])
def test_types_are_checked(type_):
    with pytest.raises(ValidationFailed):
        bo.validate_type(type_)


def test_dialing_policy_defaults_to_one_call_per_second():
    policy = DialingPolicy.for_account(Account())
    assert policy.calls_per_second == 1 and policy.concurrency == 2
    assert 1.0 < policy.interval <= 1.05  # spaced a little wider than the rate, never narrower
    fast = DialingPolicy.for_account(Account(calls_per_second=100, max_calls_in_flight=20))
    assert 0.01 < fast.interval <= 0.0105 and fast.concurrency == 21 and fast.max_calls_in_flight == 20
