"""Rails-style nested parameters, as curl -d sends them."""
import pytest

from scfm.entrypoints.api.http import BadRequest, flatten_errors, nest


def test_brackets_nest():
    assert nest([("parameters[contact_filter_params][metadata][gender]", "f"), ("type", "x")]) == {
        "parameters": {"contact_filter_params": {"metadata": {"gender": "f"}}}, "type": "x"}


def test_a_leading_bracket_is_tolerated():
    assert nest([("[metadata][name]", "Alice")]) == {"metadata": {"name": "Alice"}}


def test_empty_brackets_make_arrays():
    assert nest([("a[]", "x"), ("a[]", "y")]) == {"a": ["x", "y"]}


@pytest.mark.parametrize("pairs", [[("a", "1"), ("a[b]", "2")], [("a[b]", "1"), ("a", "2")], [("[]", "1")]])
def test_conflicting_or_malformed_names_are_bad_requests(pairs):
    with pytest.raises(BadRequest):
        nest(pairs)


def test_errors_flatten_to_rails_messages():
    assert flatten_errors({"msisdn": ["Missing data for required field."], "a": {"b": ["Not a valid integer."]}}) == {
        "msisdn": ["can't be blank"], "a[b]": ["is invalid"]}


def test_names_nest_at_most_32_levels():
    assert nest([("a" + "[b]" * 31, "1")])["a"]["b"]
    with pytest.raises(BadRequest, match="nested too deeply"):
        nest([("a" + "[b]" * 32, "1")])
    with pytest.raises(BadRequest) as refused:
        nest([("a" + "[b]" * 100000, "1")])
    assert len(str(refused.value)) < 200  # the name is not echoed whole
