"""What a phone call sends to the provider: the create-call parameters and the account's credentials."""
from __future__ import annotations

from typing import Any

from scfm.domain.errors import ValidationFailed
from scfm.domain.model import Account
from scfm.domain.ports import ProviderCredentials

# The parameters of Twilio's create-call request, in snake_case (`to` is always the call's msisdn).
REMOTE_REQUEST_PARAMS = frozenset({
    "from", "url", "twiml", "application_sid", "method", "fallback_url", "fallback_method", "status_callback",
    "status_callback_event", "status_callback_method", "send_digits", "timeout", "record",
    "recording_channels", "recording_status_callback", "recording_status_callback_method",
    "recording_status_callback_event", "recording_configuration_id", "sip_auth_username",
    "sip_auth_password", "machine_detection", "machine_detection_timeout", "machine_detection_speech_threshold",
    "machine_detection_speech_end_threshold", "machine_detection_silence_timeout", "async_amd",
    "async_amd_status_callback", "async_amd_status_callback_method", "trim", "caller_id", "byoc",
    "call_reason", "call_token", "recording_track", "time_limit", "client_notification_url",
})


# Every other parameter is a string; these the provider also takes as a number, a boolean or a list of strings.
NUMBER_PARAMS = frozenset({
    "timeout", "time_limit", "machine_detection_timeout", "machine_detection_speech_threshold",
    "machine_detection_speech_end_threshold", "machine_detection_silence_timeout",
})
BOOLEAN_PARAMS = frozenset({"record"})
LIST_PARAMS = frozenset({"status_callback_event", "recording_status_callback_event"})


def _of_its_type(name: str, value: Any) -> bool:
    if isinstance(value, str):
        return True
    if name in LIST_PARAMS and isinstance(value, list):
        return all(isinstance(item, str) for item in value)
    if name in BOOLEAN_PARAMS and isinstance(value, bool):
        return True
    return name in NUMBER_PARAMS and isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_remote_request_params(value: Any, field: str = "remote_request_params") -> dict:
    if value is None or value == {} or value == "":
        raise ValidationFailed.on(field, "can't be blank")
    if not isinstance(value, dict):
        raise ValidationFailed.on(field, "is invalid")
    unknown = sorted(set(value) - REMOTE_REQUEST_PARAMS)
    if unknown:
        raise ValidationFailed.on(field, "is not included in the list")
    wrong = {f"{field}[{name}]": ["is invalid"] for name in sorted(value) if not _of_its_type(name, value[name])}
    if wrong:
        raise ValidationFailed(wrong)
    return value


def credentials_for(account: Account, defaults: dict) -> ProviderCredentials | None:
    """The account's own credentials, else the server's defaults (PLATFORM_PROVIDER and friends)."""
    platform = account.platform_provider_name or defaults.get("PLATFORM_PROVIDER") or (
        "somleng" if account.somleng_account_sid and not account.twilio_account_sid else "twilio"
    )
    if platform == "somleng":
        sid = account.somleng_account_sid or defaults.get("SOMLENG_ACCOUNT_SID")
        token = account.somleng_auth_token or defaults.get("SOMLENG_AUTH_TOKEN")
        base_url = account.somleng_api_base_url or defaults.get("SOMLENG_CLIENT_REST_API_BASE_URL")
        host = account.somleng_api_host or defaults.get("SOMLENG_CLIENT_REST_API_HOST")
        if not base_url and host:
            base_url = host if "://" in host else f"https://{host}"
    else:
        sid = account.twilio_account_sid or defaults.get("TWILIO_ACCOUNT_SID")
        token = account.twilio_auth_token or defaults.get("TWILIO_AUTH_TOKEN")
        base_url = defaults.get("TWILIO_API_BASE_URL")
    if not sid or not token:
        return None
    return ProviderCredentials(platform=platform, account_sid=sid, auth_token=token, base_url=base_url)


def webhook_auth_token(account: Account, account_sid: str, defaults: dict) -> str | None:
    """The auth token that signs webhooks for `account_sid` (the account's own, else the server default)."""
    if account.twilio_account_sid == account_sid:
        return account.twilio_auth_token or (
            defaults.get("TWILIO_AUTH_TOKEN") if defaults.get("TWILIO_ACCOUNT_SID") == account_sid else None)
    if account.somleng_account_sid == account_sid:
        return account.somleng_auth_token or (
            defaults.get("SOMLENG_AUTH_TOKEN") if defaults.get("SOMLENG_ACCOUNT_SID") == account_sid else None)
    return None
