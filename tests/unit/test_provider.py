"""Which credentials an account dials with, and which token signs its webhooks."""
from scfm.domain.model import Account, PhoneCall
from scfm.domain.ports import ProviderCredentials
from scfm.domain.provider import credentials_for, webhook_auth_token
from scfm.services.dialing import outgoing_params

DEFAULTS = {"PLATFORM_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t1",
            "SOMLENG_ACCOUNT_SID": "S1", "SOMLENG_AUTH_TOKEN": "s1", "SOMLENG_CLIENT_REST_API_HOST": "api.somleng.org"}


def test_server_defaults_apply_when_the_account_has_none():
    assert credentials_for(Account(), DEFAULTS) == ProviderCredentials("twilio", "AC1", "t1", None)


def test_the_accounts_own_credentials_win():
    account = Account(platform_provider_name="somleng", somleng_account_sid="S2", somleng_auth_token="s2",
                      somleng_api_base_url="http://fake:1")
    assert credentials_for(account, DEFAULTS) == ProviderCredentials("somleng", "S2", "s2", "http://fake:1")


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
