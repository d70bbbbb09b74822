"""Use cases of accounts and their access tokens."""
from __future__ import annotations

import secrets
from typing import Any

from scfm.domain.errors import DeleteRefused, NotFound, ValidationFailed
from scfm.domain.filters import ACCESS_TOKEN_FILTERS, ACCOUNT_FILTERS
from scfm.domain.model import AccessToken, Account, stored, SUPER_ADMIN
from scfm.domain.ports import UnitOfWork
from scfm.domain.provider import validate_dialing_limits, validate_own_provider_sids, validate_provider_endpoint
from scfm.domain.call_plan import DEFAULT_MAX_ATTEMPTS_CAP, CallPlan
from scfm.services.common import Page, PageRequest, apply_metadata, assign, list_page

# What an account's own token may change; a super admin may also set permissions.
ACCOUNT_FIELDS = {
    "settings", "twilio_account_sid", "twilio_auth_token", "somleng_account_sid", "somleng_auth_token",
    "platform_provider_name", "somleng_api_host", "somleng_api_base_url", "calls_per_second",
    "max_calls_in_flight",
}
PERMISSIONS = {SUPER_ADMIN}


def _apply(account: Account, params: dict[str, Any], allow_permissions: bool,
           provider_settings: dict[str, Any], max_attempts: int) -> None:
    """`provider_settings`: the server's (Settings.provider): which provider URLs and rates it allows;
    `max_attempts`: the server's cap on a call plan's (SCFM_MAX_ATTEMPTS)."""
    if "call_plan" in params:
        account.call_plan = CallPlan.normalize(params["call_plan"], max_attempts)
    for field in ("somleng_api_base_url", "somleng_api_host"):
        if field in params:
            validate_provider_endpoint(field, params[field], provider_settings)
    validate_dialing_limits(params, provider_settings)
    if not allow_permissions:  # the account's own token, not a super admin
        validate_own_provider_sids(params, provider_settings)
    assign(account, params, ACCOUNT_FIELDS)
    if "permissions" in params:
        if not allow_permissions:
            raise ValidationFailed.on("permissions", "cannot be changed by this account")
        permissions = params["permissions"] or []
        if any(p not in PERMISSIONS for p in permissions):
            raise ValidationFailed.on("permissions", "is not included in the list")
        account.permissions = sorted(set(permissions))
    apply_metadata(account, params)


def create_account(uow: UnitOfWork, params: dict[str, Any], provider_settings: dict[str, Any],
                   max_attempts: int = DEFAULT_MAX_ATTEMPTS_CAP) -> Account:
    with uow:
        account = Account()
        _apply(account, params, allow_permissions=True, provider_settings=provider_settings,
               max_attempts=max_attempts)
        account = uow.accounts.add(account)
        uow.commit()
    return account


def update_account(uow: UnitOfWork, account_id: int, params: dict[str, Any], allow_permissions: bool,
                   provider_settings: dict[str, Any], max_attempts: int = DEFAULT_MAX_ATTEMPTS_CAP) -> Account:
    with uow:
        account = uow.accounts.get(account_id, for_update=True)
        _apply(account, params, allow_permissions, provider_settings, max_attempts)
        account = uow.accounts.save(account)
        uow.commit()
    return account


def get_account(uow: UnitOfWork, account_id: int) -> Account:
    with uow:
        return uow.accounts.get(account_id)


def list_accounts(uow: UnitOfWork, q: Any, paging: PageRequest) -> Page:
    with uow:
        return list_page(uow.accounts, ACCOUNT_FILTERS, q, paging)


def delete_account(uow: UnitOfWork, account_id: int) -> None:
    with uow:
        account = uow.accounts.get(account_id, for_update=True)
        if uow.accounts.has_dependents(stored(account.id)):
            raise DeleteRefused("dependent contacts, callouts or access tokens exist")
        uow.accounts.remove(account)
        uow.commit()


def create_super_admin(uow: UnitOfWork, metadata: dict[str, Any] | None = None) -> tuple[Account, AccessToken]:
    """The first account: a super admin, and its token (the only time the plain token is known)."""
    with uow:
        account = uow.accounts.add(Account(permissions=[SUPER_ADMIN], metadata=metadata or {}))
        token = AccessToken.issue(stored(account.id))
        saved = uow.access_tokens.add(token)
        uow.commit()
    saved.token = token.token
    return account, saved


def super_admin_exists(uow: UnitOfWork) -> bool:
    with uow:
        return uow.accounts.super_admin_exists()


def authenticate(uow: UnitOfWork, token: str) -> Account | None:
    if not token:
        return None
    with uow:
        return uow.access_tokens.account_for_digest(AccessToken.digest(token))


def start_dashboard_session(uow: UnitOfWork, token: str, max_age_seconds: float) -> str | None:
    """Sign in to the dashboard: a new session's key for a valid token (only its digest is stored), or None."""
    if not token:
        return None
    key = secrets.token_urlsafe(32)
    with uow:
        if not uow.access_tokens.start_session(AccessToken.digest(token), AccessToken.digest(key), max_age_seconds):
            return None
        uow.commit()
    return key


def dashboard_session(uow: UnitOfWork, key: str, max_age_seconds: float) -> tuple[Account, int] | None:
    """The account of a dashboard session still going (not signed out, its token not deleted, not too old), and
    its token's id."""
    if not key:
        return None
    with uow:
        return uow.access_tokens.account_for_session(AccessToken.digest(key), max_age_seconds)


def end_dashboard_session(uow: UnitOfWork, key: str) -> None:
    """Sign out: the session ends for every copy of its cookie."""
    if not key:
        return
    with uow:
        uow.access_tokens.end_session(AccessToken.digest(key))
        uow.commit()


def create_access_token(uow: UnitOfWork, caller: Account, params: dict[str, Any]) -> AccessToken:
    target = params.get("account_id", params.get("account_sid"))
    with uow:
        if target is not None and str(target) != str(caller.id):
            if not caller.is_super_admin:
                raise ValidationFailed.on("account_id", "cannot be another account's")
            account = uow.accounts.find(target)
            if account is None:
                raise ValidationFailed.on("account_id", "does not exist")
            account_id = stored(account.id)
        else:
            account_id = stored(caller.id)
        token = AccessToken.issue(account_id, metadata={})
        apply_metadata(token, params)
        saved = uow.access_tokens.add(token)
        uow.commit()
    saved.token = token.token
    return saved


def get_access_token(uow: UnitOfWork, token_id: int) -> AccessToken:
    with uow:
        return uow.access_tokens.get(token_id)


def list_access_tokens(uow: UnitOfWork, q: Any, paging: PageRequest) -> Page:
    with uow:
        return list_page(uow.access_tokens, ACCESS_TOKEN_FILTERS, q, paging)


def delete_access_token(uow: UnitOfWork, token_id: int) -> None:
    with uow:
        token = uow.access_tokens.get(token_id)
        uow.access_tokens.remove(token)
        uow.commit()


__all__ = ["NotFound"]
