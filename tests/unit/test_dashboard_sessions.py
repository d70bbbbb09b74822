"""The dashboard's sessions, kept on the server: signing out, deleting the token or age ends one."""
from scfm.domain.model import MAX_SESSIONS_PER_TOKEN, AccessToken, Account
from scfm.services import accounts
from tests.unit.fakes import UnitsOfWork

DAY = 86400.0


def test_a_session_lasts_until_it_is_signed_out_its_token_is_deleted_or_it_is_too_old():
    uows = UnitsOfWork()
    account = uows.db.insert("accounts", Account())
    token = AccessToken.issue(account.id)
    stored = uows.db.insert("access_tokens", token)
    assert accounts.start_dashboard_session(uows(), "not-a-token", DAY) is None
    assert accounts.start_dashboard_session(uows(), "", DAY) is None

    first, second = (accounts.start_dashboard_session(uows(), token.token, DAY) for _ in range(2))
    assert first and second and first != second and token.token not in (first, second)
    found, token_id = accounts.dashboard_session(uows(), first, DAY)
    assert found.id == account.id and token_id == stored.id
    assert accounts.dashboard_session(uows(), "another key", DAY) is None

    accounts.end_dashboard_session(uows(), first)
    assert accounts.dashboard_session(uows(), first, DAY) is None
    assert accounts.dashboard_session(uows(), second, DAY)[0].id == account.id  # the other session goes on

    uows.clock.advance(DAY + 1)
    assert accounts.dashboard_session(uows(), second, DAY) is None

    third = accounts.start_dashboard_session(uows(), token.token, DAY)
    del uows.db.tables["access_tokens"][stored.id]
    assert accounts.dashboard_session(uows(), third, DAY) is None


def test_a_token_keeps_its_latest_sessions_and_a_sign_in_beyond_ends_the_oldest():
    uows = UnitsOfWork()
    account = uows.db.insert("accounts", Account())
    token = AccessToken.issue(account.id)
    uows.db.insert("access_tokens", token)
    keys = [accounts.start_dashboard_session(uows(), token.token, DAY) for _ in range(MAX_SESSIONS_PER_TOKEN + 1)]
    assert accounts.dashboard_session(uows(), keys[0], DAY) is None
    assert all(accounts.dashboard_session(uows(), key, DAY) is not None for key in keys[1:])
