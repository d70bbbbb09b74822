"""The q[...] filter language, parsed without a database."""
from datetime import datetime, timezone

import pytest

from scfm.domain.errors import ValidationFailed
from scfm.domain.filters import (
    CALLOUT_PARTICIPATION_FILTERS, CONTACT_FILTERS, PHONE_CALL_FILTERS, Custom, Eq, JsonEq, TimeCmp, parse_filters,
)


def test_metadata_paths_become_json_conditions():
    assert parse_filters(CONTACT_FILTERS, {"metadata": {"gender": "f", "address": {"city": "PP"}}}) == [
        JsonEq("metadata", ("gender",), "f"), JsonEq("metadata", ("address", "city"), "PP")]


def test_msisdn_is_normalized():
    assert parse_filters(CONTACT_FILTERS, {"msisdn": "252662345700"}) == [Eq("msisdn", ("+252662345700",))]


def test_a_comma_list_means_any_of():
    assert parse_filters(PHONE_CALL_FILTERS, {"status": "remotely_queued,in_progress"}) == [
        Eq("status", ("remotely_queued", "in_progress"))]


def test_free_text_keeps_its_commas():
    assert parse_filters(PHONE_CALL_FILTERS, {"remote_error_message": "a, b"}) == [
        Eq("remote_error_message", ("a, b",))]


UTC = timezone.utc


@pytest.mark.parametrize("key,value,expected", [
    ("created_at_before", "2017-11-29 01:36:02", TimeCmp("created_at", "<", datetime(2017, 11, 29, 1, 36, 2, tzinfo=UTC))),
    ("created_at_or_after", "2017-11-29T01:36:02Z", TimeCmp("created_at", ">=", datetime(2017, 11, 29, 1, 36, 2, tzinfo=UTC))),
    ("created_at_before", "2017-11-29", TimeCmp("created_at", "<", datetime(2017, 11, 29, tzinfo=UTC))),
    ("created_at_or_before", "2017-11-29", TimeCmp("created_at", "<", datetime(2017, 11, 30, tzinfo=UTC))),
    ("created_at_after", "2017-11-29", TimeCmp("created_at", ">=", datetime(2017, 11, 30, tzinfo=UTC))),
    ("updated_at_or_after", "2017-11-29", TimeCmp("updated_at", ">=", datetime(2017, 11, 29, tzinfo=UTC))),
])
def test_timestamp_ranges_with_date_semantics(key, value, expected):
    assert parse_filters(CONTACT_FILTERS, {key: value}) == [expected]


def test_participation_retry_selectors():
    assert parse_filters(CALLOUT_PARTICIPATION_FILTERS, {
        "has_phone_calls": "false", "no_phone_calls_or_last_attempt": "failed,errored"}) == [
        Custom("has_phone_calls", False), Custom("no_phone_calls_or_last_attempt", ("failed", "errored"))]


@pytest.mark.parametrize("raw,key,message", [
    ({"gender": "f"}, "q[gender]", "is not a valid filter"),
    ({"created_at_before": "yesterday"}, "q[created_at_before]", "is invalid"),
    ({"msisdn": "abc"}, "q[msisdn]", "is invalid"),
    ({"metadata": "f"}, "q[metadata]", "is invalid"),
    ({"remotely_queued_at_before": "2017-11-29"}, "q[remotely_queued_at_before]", "is not a valid filter"),
])
def test_unknown_keys_and_unparsable_values_are_errors(raw, key, message):
    with pytest.raises(ValidationFailed) as error:
        parse_filters(CONTACT_FILTERS, raw)
    assert error.value.errors == {key: [message]}


def test_unknown_statuses_are_errors():
    with pytest.raises(ValidationFailed):
        parse_filters(PHONE_CALL_FILTERS, {"status": "finished"})
    with pytest.raises(ValidationFailed):
        parse_filters(CALLOUT_PARTICIPATION_FILTERS, {"has_phone_calls": "maybe"})


def test_blank_values_are_ignored():
    assert parse_filters(CONTACT_FILTERS, {"msisdn": ""}) == []
    assert parse_filters(CONTACT_FILTERS, None) == []
