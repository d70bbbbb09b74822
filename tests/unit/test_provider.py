"""Which credentials an account dials with, where they go, and which token signs its webhooks."""
import pytest

from scfm.config import Settings
from scfm.domain.errors import ValidationFailed
from scfm.domain.model import Account, PhoneCall
from scfm.domain.ports import ProviderCredentials
from scfm.domain.provider import (
    ALLOWED_URLS, EndpointNotAllowed, credentials_for, normalise_provider_url, validate_dialing_limits,
    validate_provider_endpoint, webhook_auth_token,
)
from scfm.services.dispatcher import outgoing_params

DEFAULTS = {"PLATFORM_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t1",
            "SOMLENG_ACCOUNT_SID": "S1", "SOMLENG_AUTH_TOKEN": "s1", "SOMLENG_CLIENT_REST_API_HOST": "api.somleng.org"}


def test_server_defaults_apply_when_the_account_has_none():
    assert credentials_for(Account(), DEFAULTS) == ProviderCredentials("twilio", "AC1", "t1", None)


def test_the_accounts_own_credentials_win():
    account = Account(platform_provider_name="somleng", somleng_account_sid="S2", somleng_auth_token="s2",
                      somleng_api_base_url="http://fake:1")
    defaults = {**DEFAULTS, ALLOWED_URLS: frozenset({"http://fake:1"})}
    assert credentials_for(account, defaults) == ProviderCredentials("somleng", "S2", "s2", "http://fake:1")


def test_somleng_host_becomes_a_base_url():
    credentials = credentials_for(Account(platform_provider_name="somleng"), DEFAULTS)
    assert credentials.base_url == "https://api.somleng.org"


def test_no_credentials_anywhere_is_none():
    assert credentials_for(Account(), {}) is None


def test_webhooks_are_checked_with_the_token_of_the_sid_they_name():
    account = Account(twilio_account_sid="AC1", somleng_account_sid="S2", somleng_auth_token="s2")
    assert webhook_auth_token(account, "AC1", DEFAULTS) == "t1"  # the server's, for the server's sid
    assert webhook_auth_token(account, "S2", DEFAULTS) == "s2"
    assert webhook_auth_token(account, "AC9", DEFAULTS) is None
    assert webhook_auth_token(Account(twilio_account_sid="AC7"), "AC7", DEFAULTS) is None


def test_outgoing_params_add_a_status_callback_that_names_the_call():
    call = PhoneCall(id=7, remote_request_params={"from": "1234", "url": "https://x/y"})
    assert outgoing_params(call, "https://scfm.example.org") == {
        "from": "1234", "url": "https://x/y",
        "status_callback": "https://scfm.example.org/api/remote_phone_call_events?phone_call_id=7",
        "status_callback_event": ["initiated", "ringing", "answered", "completed"]}
    assert outgoing_params(call, None) == {"from": "1234", "url": "https://x/y"}
    own = PhoneCall(id=7, remote_request_params={"from": "1", "url": "u", "status_callback": "https://mine"})
    assert outgoing_params(own, "https://scfm.example.org")["status_callback"] == "https://mine"


# ---------------------------------------------------------------- provider endpoints (issue 9, cases 1 and 2)

SERVER = {"PLATFORM_PROVIDER": "somleng", "SOMLENG_ACCOUNT_SID": "S1", "SOMLENG_AUTH_TOKEN": "server-token",
          "SOMLENG_CLIENT_REST_API_BASE_URL": "https://api.somleng.org",
          ALLOWED_URLS: Settings.from_env({ALLOWED_URLS: "https://eu.somleng.example, http://10.0.0.5:8080/api"}
                                          ).provider[ALLOWED_URLS]}


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9999/x", "file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO", "http://169.254.169.254/latest",
    "https://eu.somleng.example@127.0.0.1", "https://user:pw@eu.somleng.example", "http://eu.somleng.example",
    "https://eu.somleng.example/../x", "https://eu.somleng.example?x=1", "https://eu.somleng.example#x",
    "https://eu.somleng.example:8443", "https://eu.somleng.example.evil.org", "https://eu.somleng.example\\@x",
    "https://eu.somleng.example /x", "javascript:alert(1)", "https://" + "a" * 3000,
])
def test_a_tenant_cannot_choose_a_base_url_the_operator_did_not_list(url):
    with pytest.raises(ValidationFailed) as refused:
        validate_provider_endpoint("somleng_api_base_url", url, SERVER)
    assert list(refused.value.errors) == ["somleng_api_base_url"]


@pytest.mark.parametrize("field,value", [
    ("somleng_api_base_url", "https://eu.somleng.example"), ("somleng_api_base_url", "HTTPS://EU.Somleng.example:443/"),
    ("somleng_api_base_url", "http://10.0.0.5:8080/api/"), ("somleng_api_base_url", "https://api.somleng.org"),
    ("somleng_api_host", "eu.somleng.example"), ("somleng_api_host", "api.somleng.org"),
])
def test_a_tenant_may_choose_what_the_operator_allows(field, value):
    assert validate_provider_endpoint(field, value, SERVER) == value


@pytest.mark.parametrize("host", ["127.0.0.1:6379", "eu.somleng.example/x", "eu.somleng.example:80", "localhost"])
def test_a_host_is_checked_as_https_at_that_host(host):
    with pytest.raises(ValidationFailed) as refused:
        validate_provider_endpoint("somleng_api_host", host, SERVER)
    assert list(refused.value.errors) == ["somleng_api_host"]


def test_an_allow_list_entry_that_is_not_a_plain_url_is_a_configuration_error():
    with pytest.raises(ValueError):
        Settings.from_env({ALLOWED_URLS: "https://ok.example file:///etc/passwd"})
    assert normalise_provider_url("https://Ok.Example.:443/a/") == "https://ok.example/a"


def test_the_servers_credentials_go_only_to_the_servers_url():
    for chosen in ({"somleng_api_base_url": "http://127.0.0.1:9999/x"}, {"somleng_api_host": "127.0.0.1:6379"},
                   {"somleng_api_base_url": "https://eu.somleng.example"}):  # even one the operator allows
        with pytest.raises(EndpointNotAllowed, match="server's provider credentials are sent nowhere else"):
            credentials_for(Account(platform_provider_name="somleng", **chosen), SERVER)
    assert credentials_for(Account(platform_provider_name="somleng"), SERVER) == ProviderCredentials(
        "somleng", "S1", "server-token", "https://api.somleng.org")
    same = Account(platform_provider_name="somleng", somleng_api_base_url="https://api.somleng.org/")
    assert credentials_for(same, SERVER).base_url == "https://api.somleng.org"


def test_an_accounts_own_credentials_go_only_to_a_url_still_allowed():
    account = Account(platform_provider_name="somleng", somleng_account_sid="S2", somleng_auth_token="own",
                      somleng_api_base_url="https://EU.somleng.example/")
    assert credentials_for(account, SERVER).base_url == "https://eu.somleng.example"
    with pytest.raises(EndpointNotAllowed, match="not among the provider URLs this server allows"):
        credentials_for(account, {**SERVER, ALLOWED_URLS: frozenset()})  # the operator took it off the list


def test_ceilings_on_the_rate_and_calls_in_flight():
    limits = Settings.from_env({"SCFM_MAX_CALLS_PER_SECOND": "20", "SCFM_MAX_CALLS_IN_FLIGHT": "50"}).provider
    validate_dialing_limits({"calls_per_second": 20, "max_calls_in_flight": 50}, limits)
    with pytest.raises(ValidationFailed) as refused:
        validate_dialing_limits({"calls_per_second": 20.5}, limits)
    assert refused.value.errors == {"calls_per_second": ["must be less than or equal to 20"]}
    with pytest.raises(ValidationFailed) as refused:
        validate_dialing_limits({"max_calls_in_flight": 51}, limits)
    assert list(refused.value.errors) == ["max_calls_in_flight"]
    with pytest.raises(ValidationFailed):
        validate_dialing_limits({"calls_per_second": 10000}, {})  # the default ceiling: 100 calls/s


def test_the_dialer_keeps_an_account_within_the_ceilings_set_after_it():
    from scfm.domain.dialing import DialingPolicy
    from scfm.domain.provider import dialing_ceilings

    limits = dialing_ceilings({"SCFM_MAX_CALLS_PER_SECOND": 20.0, "SCFM_MAX_CALLS_IN_FLIGHT": 50})
    assert DialingPolicy(500.0, None).within(*limits) == DialingPolicy(20.0, 50)
    assert DialingPolicy(5.0, 10).within(*limits) == DialingPolicy(5.0, 10)


def test_a_listed_call_without_a_readable_sid_is_never_adopted():
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from scfm.adapters.provider import _listed

    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    listed = SimpleNamespace(sid="../etc", status="queued", direction="outbound-api", duration=None, to="+1",
                             date_created=when)
    assert _listed(listed).created_at is None
    assert _listed(SimpleNamespace(**{**vars(listed), "sid": "CA" + "a" * 32})).created_at == when


@pytest.mark.parametrize("signed_url, seen_url", [
    ("https://calls.example.org/api/remote_phone_call_events?phone_call_id=7",) * 2,
    ("https://calls.example.org/api/remote_phone_call_events", "https://calls.example.org:443/api/remote_phone_call_events"),
    ("https://calls.example.org:443/api/remote_phone_call_events", "https://calls.example.org/api/remote_phone_call_events"),
    ("http://127.0.0.1:8080/api/remote_phone_call_events", "http://127.0.0.1:8080/api/remote_phone_call_events"),
    ("http://127.0.0.1/api/remote_phone_call_events", "http://127.0.0.1:8080/api/remote_phone_call_events"),
    ("https://calls.example.org/api/remote_phone_call_events", "https://other.example.org/api/remote_phone_call_events"),
])
@pytest.mark.parametrize("token", ["the-token", "another-token"])
def test_a_webhook_signature_is_valid_exactly_when_twilios_validator_says_so(signed_url, seen_url, token):
    from twilio.request_validator import RequestValidator
    from werkzeug.datastructures import MultiDict

    from scfm.adapters.provider import signature_is_valid

    form = MultiDict([("CallSid", "CA1"), ("AccountSid", "AC1"), ("Digits", "1"), ("Digits", "2"), ("Digits", "1"),
                      ("CallStatus", "in-progress"), ("Caller", "+855 12 ünïcode")])
    signature = RequestValidator("the-token").compute_signature(signed_url, form)
    expected = RequestValidator(token).validate(seen_url, form, signature)
    assert signature_is_valid(token, seen_url, form, signature) is expected
    assert signature_is_valid(token, seen_url, dict(form.lists()), signature) is expected
    assert signature_is_valid(token, seen_url, form, signature[:-2] + "é=") is False
    assert signature_is_valid(token, seen_url, form, "") is False


@pytest.mark.parametrize("data", [
    {"To": "+85512345678", "From": "1234", "Url": "https://example.com/twiml?a=1&b=é",
     "StatusCallbackEvent": ["initiated", "ringing", "answered", "completed"], "Timeout": None, "Record": True},
    [("To", "+1 (555) 010-0000"), ("SendDigits", "ww1234#")],
])
def test_the_providers_http_client_encodes_forms_as_requests_does(data):
    import requests

    from scfm.adapters.provider import _form

    prepared = requests.Request("POST", "https://api.example.com/", data=data).prepare()
    assert _form(data) == prepared.body


@pytest.mark.parametrize("url, refusal", [
    ("api.twilio.com/2010-04-01", "MissingSchema"), ("ftp://api.twilio.com/", "InvalidSchema"),
    ("https:///2010-04-01", "InvalidURL"),
])
def test_the_providers_http_client_refuses_a_url_it_cannot_ask_as_requests_does(url, refusal):
    import requests

    from scfm.adapters.provider import RecordingHttpClient

    with pytest.raises(requests.RequestException) as raised:
        RecordingHttpClient(timeout=1).request("POST", url, data={"To": "+85512345678"})
    assert type(raised.value).__name__ == refusal
