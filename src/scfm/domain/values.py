"""Value objects: phone numbers (msisdn) and metadata with its merge modes."""
from __future__ import annotations

import copy
import json
from enum import Enum
from typing import Any

import phonenumbers

from scfm.domain.errors import ValidationFailed

MAX_METADATA_BYTES = 64 * 1024


def normalize_msisdn(raw: Any, field: str = "msisdn") -> str:
    """E.164 form of a valid number; `252662345678` and `+252662345678` are the same number."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise ValidationFailed.on(field, "can't be blank")
    if not isinstance(raw, (str, int)) or isinstance(raw, bool):
        raise ValidationFailed.on(field, "is invalid")
    text = str(raw).strip()
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


def msisdn_or_as_given(raw: str) -> str:
    """Numbers a provider reports are kept even when they are not valid (e.g. a short code)."""
    try:
        return normalize_msisdn(raw)
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


def deep_merge(old: dict, new: dict) -> dict:
    merged = copy.deepcopy(old)
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def validate_json_object(value: Any, field: str = "metadata") -> dict:
    if not isinstance(value, dict):
        raise ValidationFailed.on(field, "is invalid")
    if len(json.dumps(value)) > MAX_METADATA_BYTES:
        raise ValidationFailed.on(field, f"is too large (maximum is {MAX_METADATA_BYTES} bytes)")
    return value


def merge_metadata(old: dict | None, new: Any, mode: MergeMode, field: str = "metadata") -> dict:
    new = validate_json_object(new, field)
    old = old or {}
    if mode is MergeMode.REPLACE:
        return copy.deepcopy(new)
    if mode is MergeMode.DEEP_MERGE:
        return deep_merge(old, new)
    return {**old, **copy.deepcopy(new)}
