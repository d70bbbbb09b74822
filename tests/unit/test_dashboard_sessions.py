"""The dashboard's sessions, kept on the server: signing out, deleting the token or age ends one."""
from scfm.domain.model import AccessToken, Account
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
    assert accounts.dashboard_account(uows(), first, DAY).id == account.id
    assert accounts.dashboard_account(uows(), "another key", DAY) is None

    accounts.end_dashboard_session(uows(), first)
    assert accounts.dashboard_account(uows(), first, DAY) is None
    assert accounts.dashboard_account(uows(), second, DAY).id == account.id  # the other session goes on

    uows.clock.advance(DAY + 1)
    assert accounts.dashboard_account(uows(), second, DAY) is None

    third = accounts.start_dashboard_session(uows(), token.token, DAY)
    del uows.db.tables["access_tokens"][stored.id]
    assert accounts.dashboard_account(uows(), third, DAY) is None
