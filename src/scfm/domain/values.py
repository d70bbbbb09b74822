"""Value objects: phone numbers (msisdn) and metadata with its merge modes."""
from __future__ import annotations

import copy
import json
from enum import Enum
from typing import Any

import phonenumbers

from scfm.domain.errors import ValidationFailed

# Every JSON document a tenant stores (metadata, account settings, batch operation parameters, remote request
# parameters) is at most this long, serialized.
MAX_DOCUMENT_BYTES = 64 * 1024
MAX_METADATA_BYTES = MAX_DOCUMENT_BYTES
MAX_MSISDN_LENGTH = 32  # E.164 is at most 15 digits: room for a plus sign and spaces, not for a payload
MAX_REPORTED_NUMBER_LENGTH = 64  # a provider's From/To as given: a short code, `client:alice`, a short SIP URI


def document_size(value: Any) -> int:
    return len(json.dumps(value))


def normalize_msisdn(raw: Any, field: str = "msisdn") -> str:
    """E.164 form of a valid number; `252662345678` and `+252662345678` are the same number."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise ValidationFailed.on(field, "can't be blank")
    if not isinstance(raw, (str, int)) or isinstance(raw, bool):
        raise ValidationFailed.on(field, "is invalid")
    text = str(raw).strip()
    if len(text) > MAX_MSISDN_LENGTH:
        raise ValidationFailed.on(field, f"is too long (maximum is {MAX_MSISDN_LENGTH} characters)")
    digits = text[1:] if text.startswith("+") else text
    if not digits.isdigit():
        raise ValidationFailed.on(field, "is invalid")
    try:
        number = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        raise ValidationFailed.on(field, "is invalid") from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationFailed.on(field, "is invalid")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def msisdn_or_as_given(raw: str, field: str = "msisdn") -> str:
    """Numbers a provider reports are kept even when they are not valid (e.g. a short code), within a bound."""
    if len(raw) > MAX_REPORTED_NUMBER_LENGTH:
        raise ValidationFailed.on(field, f"is too long (maximum is {MAX_REPORTED_NUMBER_LENGTH} characters)")
    try:
        return normalize_msisdn(raw, field)
    except ValidationFailed:
        return raw


class MergeMode(str, Enum):
    MERGE = "merge"
    DEEP_MERGE = "deep_merge"
    REPLACE = "replace"

    @classmethod
    def parse(cls, raw: Any, field: str = "metadata_merge_mode") -> "MergeMode":
        if raw is None or raw == "":
            return cls.MERGE
        try:
            return cls(raw)
        except ValueError:
            raise ValidationFailed.on(field, "is not included in the list") from None


def deep_merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(old)
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def validate_json_object(value: Any, field: str = "metadata") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationFailed.on(field, "is invalid")
    if document_size(value) > MAX_DOCUMENT_BYTES:
        raise ValidationFailed.on(field, f"is too large (maximum is {MAX_DOCUMENT_BYTES} bytes)")
    return value


def merge_metadata(old: dict[str, Any] | None, new: Any, mode: MergeMode, field: str = "metadata") -> dict[str, Any]:
    new = validate_json_object(new, field)
    old = old or {}
    if mode is MergeMode.REPLACE:
        return copy.deepcopy(new)
    merged = deep_merge(old, new) if mode is MergeMode.DEEP_MERGE else {**old, **copy.deepcopy(new)}
    return validate_json_object(merged, field)  # merges of small parts must not grow it without bound
