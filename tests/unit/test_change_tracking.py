"""An entity knows what changed since it was loaded, so `save` writes exactly that."""
from datetime import datetime, timezone

from scfm.domain.model import Callout, PhoneCall


def test_a_new_entity_has_every_field_to_write():
    assert "status" in Callout(account_id=1).changed_fields()


def test_a_loaded_entity_has_nothing_to_write_until_it_changes():
    call = PhoneCall(id=1, account_id=1, status="created", metadata={"a": {"b": 1}})
    call.mark_clean()
    assert call.changed_fields() == set()

    call.fire("queue")
    call.mark_queued(datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert call.changed_fields() == {"status", "queued_at", "next_attempt_at"}


def test_a_change_inside_a_dict_is_seen():
    call = PhoneCall(id=1, metadata={"a": {"b": 1}})
    call.mark_clean()
    call.metadata["a"]["b"] = 2
    assert call.changed_fields() == {"metadata"}


def test_setting_the_same_value_is_no_change():
    callout = Callout(id=1, status="running")
    callout.mark_clean()
    callout.status = "running"
    assert callout.changed_fields() == set()
