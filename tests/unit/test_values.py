"""Phone numbers and metadata merge modes."""
import pytest

from scfm.domain.errors import ValidationFailed
from scfm.domain.values import MergeMode, merge_metadata, msisdn_or_as_given, normalize_msisdn


@pytest.mark.parametrize("raw", ["252662345678", "+252662345678", " +252662345678 ", 252662345678])
def test_msisdn_is_normalized_to_e164(raw):
    assert normalize_msisdn(raw) == "+252662345678"


@pytest.mark.parametrize("raw,message", [
    ("", "can't be blank"), (None, "can't be blank"), ("1234", "is invalid"), ("abc", "is invalid"),
    ("+1 (555) 000", "is invalid"), (True, "is invalid"), ({"a": 1}, "is invalid"),
])
def test_invalid_msisdns_are_refused(raw, message):
    with pytest.raises(ValidationFailed) as error:
        normalize_msisdn(raw)
    assert error.value.errors == {"msisdn": [message]}


def test_numbers_reported_by_a_provider_are_kept_when_not_valid():
    assert msisdn_or_as_given("1234") == "1234"
    assert msisdn_or_as_given("85510202103") == "+85510202103"


OLD = {"name": "Alice", "address": {"city": "PP", "zip": "1"}}


def test_merge_replaces_top_level_keys():
    assert merge_metadata(OLD, {"address": {"city": "SR"}, "x": 1}, MergeMode.MERGE) == {
        "name": "Alice", "address": {"city": "SR"}, "x": 1}


def test_deep_merge_merges_nested_objects():
    assert merge_metadata(OLD, {"address": {"city": "SR"}}, MergeMode.DEEP_MERGE) == {
        "name": "Alice", "address": {"city": "SR", "zip": "1"}}


def test_replace_replaces_everything():
    assert merge_metadata(OLD, {"gender": "f"}, MergeMode.REPLACE) == {"gender": "f"}


def test_merging_never_changes_the_old_value():
    merge_metadata(OLD, {"address": {"city": "SR"}}, MergeMode.DEEP_MERGE)
    assert OLD["address"]["city"] == "PP"


@pytest.mark.parametrize("mode", [None, ""])
def test_merge_is_the_default_mode(mode):
    assert MergeMode.parse(mode) is MergeMode.MERGE


def test_an_unknown_mode_is_an_error():
    with pytest.raises(ValidationFailed) as error:
        MergeMode.parse("smash")
    assert error.value.errors == {"metadata_merge_mode": ["is not included in the list"]}


@pytest.mark.parametrize("value", ["x", 1, ["a"], None])
def test_metadata_must_be_an_object(value):
    with pytest.raises(ValidationFailed):
        merge_metadata({}, value, MergeMode.MERGE)


def test_a_number_a_provider_reports_is_kept_as_given_within_a_bound():
    assert msisdn_or_as_given("1294") == "1294"
    assert msisdn_or_as_given("client:alice") == "client:alice"
    assert msisdn_or_as_given("+85510202103") == "+85510202103"
    with pytest.raises(ValidationFailed) as refused:
        msisdn_or_as_given("+" + "8" * 100000, field="From")
    assert refused.value.errors == {"From": ["is too long (maximum is 64 characters)"]}


def test_an_over_long_msisdn_is_too_long_before_it_is_parsed():
    with pytest.raises(ValidationFailed) as refused:
        normalize_msisdn("+" + "2" * 20000)
    assert refused.value.errors == {"msisdn": ["is too long (maximum is 32 characters)"]}


def test_merged_metadata_is_bounded_as_a_whole():
    old = {"a": "x" * 40000}
    assert merge_metadata(old, {"b": "1"}, MergeMode.MERGE) == {"a": "x" * 40000, "b": "1"}
    for mode in (MergeMode.MERGE, MergeMode.DEEP_MERGE):
        with pytest.raises(ValidationFailed):
            merge_metadata(old, {"b": "x" * 40000}, mode)
    assert merge_metadata(old, {"b": "x" * 40000}, MergeMode.REPLACE) == {"b": "x" * 40000}
