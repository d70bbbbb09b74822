"""What a phone call sends to the provider: the create-call parameters and the account's credentials."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from scfm.domain.errors import ValidationFailed
from scfm.domain.model import Account
from scfm.domain.ports import ProviderCredentials, ProviderRefused

# Keys of the provider settings (Settings.provider) besides the provider's own environment variables
ALLOWED_URLS = "SCFM_ALLOWED_PROVIDER_URLS"  # frozenset of normalised URLs a tenant may choose
MAX_CALLS_PER_SECOND = "SCFM_MAX_CALLS_PER_SECOND"
MAX_CALLS_IN_FLIGHT = "SCFM_MAX_CALLS_IN_FLIGHT"
# The rate of the server's own provider account, which the tenants dialing with the server's credentials
# share: the operator sets it, as the provider allows it (1 call/s is Twilio's and Somleng's default).
SERVER_CALLS_PER_SECOND = "SCFM_SERVER_CALLS_PER_SECOND"
DEFAULT_SERVER_CALLS_PER_SECOND = 1.0
DEFAULT_MAX_CALLS_PER_SECOND = 100.0
DEFAULT_MAX_CALLS_IN_FLIGHT = 1000
MAX_URL_LENGTH = 2048

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


def validate_remote_request_params(value: Any, field: str = "remote_request_params") -> dict[str, Any]:
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


# ---------------------------------------------------------------- provider endpoints


class EndpointNotAllowed(ProviderRefused):
    """An account's provider URL that this server does not (or no longer) allow: its calls end errored."""


def normalise_provider_url(value: Any) -> str | None:
    """One spelling of a plain http(s) URL of a host (scheme and host lower case, no default port, no trailing
    slash), or None for anything else: userinfo, a query or fragment, dot segments, blanks, other schemes."""
    if not isinstance(value, str) or not value or len(value) > MAX_URL_LENGTH:
        return None
    if any(ch.isspace() or not ch.isprintable() or ch in "\\@?#" for ch in value):
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").rstrip(".")
    if scheme not in ("http", "https") or not host or "%" in host or parts.netloc.endswith(":"):
        return None
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        return None
    if ":" in host:
        host = f"[{host}]"  # IPv6
    netloc = host if port in (None, 443 if scheme == "https" else 80) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def host_url(host: Any) -> str | None:
    """somleng_api_host as a URL: https unless it names its scheme."""
    if not isinstance(host, str) or not host:
        return None
    url = normalise_provider_url(host if "://" in host else f"https://{host}")
    if url is None or ("://" not in host and urlsplit(url).path):
        return None  # a host with a path is not a host
    return url


def server_provider_urls(defaults: dict[str, Any]) -> dict[str, str | None]:
    """The provider URL the server's own credentials go to, per platform (None: the platform's public API)."""
    somleng, host = defaults.get("SOMLENG_CLIENT_REST_API_BASE_URL"), defaults.get("SOMLENG_CLIENT_REST_API_HOST")
    twilio = defaults.get("TWILIO_API_BASE_URL")
    if not somleng and host:
        somleng = host_url(host) or (host if "://" in host else f"https://{host}")
    # the operator's own settings are trusted as written when they do not normalise
    return {"somleng": somleng and (normalise_provider_url(somleng) or somleng.rstrip("/")),
            "twilio": twilio and (normalise_provider_url(twilio) or twilio.rstrip("/"))}


def allowed_provider_urls(defaults: dict[str, Any]) -> frozenset[str]:
    """What a tenant may choose: the operator's allow-list and the server's own provider URLs."""
    server = {url for url in server_provider_urls(defaults).values() if url}
    return frozenset(defaults.get(ALLOWED_URLS) or ()) | server


def parse_allowed_urls(value: str | None) -> frozenset[str]:
    """SCFM_ALLOWED_PROVIDER_URLS: URLs separated by commas or blanks; an entry that is not a plain http(s)
    URL is a configuration error, not something to ignore."""
    urls = set()
    for entry in (value or "").replace(",", " ").split():
        url = normalise_provider_url(entry)
        if url is None:
            raise ValueError(f"{ALLOWED_URLS}: {entry[:100]!r} is not a plain http(s) URL")
        urls.add(url)
    return frozenset(urls)


def validate_provider_endpoint(field: str, value: Any, defaults: dict[str, Any]) -> str | None:
    """A tenant's somleng_api_base_url or somleng_api_host: None, or one of the allowed URLs (422 otherwise)."""
    if value is None or value == "":
        return None
    url = host_url(value) if field == "somleng_api_host" else normalise_provider_url(value)
    if url is None:
        raise ValidationFailed.on(field, "is invalid")
    if url not in allowed_provider_urls(defaults):
        raise ValidationFailed.on(field, "is not among the provider URLs this server allows")
    return str(value)


def _chosen_somleng_url(account: Account) -> tuple[str, str | None] | None:
    if account.somleng_api_base_url:
        return "somleng_api_base_url", normalise_provider_url(account.somleng_api_base_url)
    if account.somleng_api_host:
        return "somleng_api_host", host_url(account.somleng_api_host)
    return None


def validate_own_provider_sids(params: dict[str, Any], defaults: dict[str, Any]) -> None:
    """The server's provider account SIDs are not a tenant's to claim: the webhooks they sign would be
    attributed to that tenant (a super admin may give them to an account)."""
    reserved = {defaults.get("TWILIO_ACCOUNT_SID"), defaults.get("SOMLENG_ACCOUNT_SID")} - {None, ""}
    for field in ("twilio_account_sid", "somleng_account_sid"):
        if params.get(field) and params[field] in reserved:
            raise ValidationFailed.on(field, "has already been taken")


def dialing_ceilings(defaults: dict[str, Any]) -> tuple[float, int]:
    """The operator's ceilings on calls_per_second and max_calls_in_flight, for any one account."""
    return (float(defaults.get(MAX_CALLS_PER_SECOND) or DEFAULT_MAX_CALLS_PER_SECOND),
            int(defaults.get(MAX_CALLS_IN_FLIGHT) or DEFAULT_MAX_CALLS_IN_FLIGHT))


def server_account_rate(credentials: ProviderCredentials, defaults: dict[str, Any]) -> float | None:
    """The operator's rate for the server's provider account when these credentials are its, else None (an
    account's own provider account, whose rate is the account's calls_per_second)."""
    if credentials.account_sid not in {defaults.get("TWILIO_ACCOUNT_SID"), defaults.get("SOMLENG_ACCOUNT_SID")}:
        return None
    return float(defaults.get(SERVER_CALLS_PER_SECOND) or DEFAULT_SERVER_CALLS_PER_SECOND)


def validate_dialing_limits(params: dict[str, Any], defaults: dict[str, Any]) -> None:
    """calls_per_second and max_calls_in_flight not above 0 (NaN neither), or above the server's ceilings, are
    422s (the API's schema says so too; the dashboard's form has only these)."""
    max_rate, max_in_flight = dialing_ceilings(defaults)
    rate, in_flight = params.get("calls_per_second"), params.get("max_calls_in_flight")
    if rate is not None and not rate > 0:
        raise ValidationFailed.on("calls_per_second", "must be greater than 0")
    if in_flight is not None and not in_flight > 0:
        raise ValidationFailed.on("max_calls_in_flight", "must be greater than 0")
    if rate is not None and rate > max_rate:
        raise ValidationFailed.on("calls_per_second", f"must be less than or equal to {max_rate:g}")
    if in_flight is not None and in_flight > max_in_flight:
        raise ValidationFailed.on("max_calls_in_flight", f"must be less than or equal to {max_in_flight}")


# ---------------------------------------------------------------- credentials


def credentials_for(account: Account, defaults: dict[str, Any]) -> ProviderCredentials | None:
    """The account's own credentials, else the server's defaults (PLATFORM_PROVIDER and friends).

    The server's auth token goes only to the server's provider URL; an account's own URL is used with its
    own token, and only while the server allows it (EndpointNotAllowed otherwise)."""
    platform = account.platform_provider_name or defaults.get("PLATFORM_PROVIDER") or (
        "somleng" if account.somleng_account_sid and not account.twilio_account_sid else "twilio"
    )
    server_urls = server_provider_urls(defaults)
    if platform == "somleng":
        sid = account.somleng_account_sid or defaults.get("SOMLENG_ACCOUNT_SID")
        token = account.somleng_auth_token or defaults.get("SOMLENG_AUTH_TOKEN")
        base_url = server_urls["somleng"]
        chosen = _chosen_somleng_url(account)
        if chosen and sid and token and chosen[1] != base_url:
            field, url = chosen
            if not account.somleng_auth_token:
                raise EndpointNotAllowed(
                    f"Unable to create record: the account's {field} is not the server's provider URL, and the "
                    "server's provider credentials are sent nowhere else (set the account's own somleng_auth_token)")
            if url is None or url not in allowed_provider_urls(defaults):
                raise EndpointNotAllowed(
                    f"Unable to create record: the account's {field} is not among the provider URLs this server "
                    "allows (SCFM_ALLOWED_PROVIDER_URLS)")
            base_url = url
    else:
        sid = account.twilio_account_sid or defaults.get("TWILIO_ACCOUNT_SID")
        token = account.twilio_auth_token or defaults.get("TWILIO_AUTH_TOKEN")
        base_url = server_urls["twilio"]
    if not sid or not token:
        return None
    return ProviderCredentials(platform=platform, account_sid=sid, auth_token=token, base_url=base_url)


def webhook_auth_token(account: Account, account_sid: str, defaults: dict[str, Any]) -> str | None:
    """The auth token that signs webhooks for `account_sid` (the account's own, else the server default)."""
    if account.twilio_account_sid == account_sid:
        return account.twilio_auth_token or (
            defaults.get("TWILIO_AUTH_TOKEN") if defaults.get("TWILIO_ACCOUNT_SID") == account_sid else None)
    if account.somleng_account_sid == account_sid:
        return account.somleng_auth_token or (
            defaults.get("SOMLENG_AUTH_TOKEN") if defaults.get("SOMLENG_ACCOUNT_SID") == account_sid else None)
    return None
