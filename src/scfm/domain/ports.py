"""Ports: what the services need from the outside world, as protocols."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class ProviderCredentials:
    platform: str  # twilio or somleng
    account_sid: str
    auth_token: str
    base_url: str | None = None  # None: the platform's public API


@dataclass(frozen=True)
class RemoteCall:
    sid: str
    status: str | None
    direction: str | None
    duration: int | None
    response: dict = field(default_factory=dict)  # the provider's JSON, as it answered
    created_at: datetime | None = None


class ProviderError(Exception):
    """Base of what a provider call can end in, besides a RemoteCall."""


class ProviderRefused(ProviderError):
    """The provider answered and refused (a 4xx): the call will not happen."""

    def __init__(self, message: str, status: int | None = None, code: int | None = None):
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


class ProviderRateLimited(ProviderError):
    """429 or Twilio's 20429: nothing happened, try the same request later."""


class ProviderUnreachable(ProviderError):
    """The request never reached the provider (no connection): safe to try again."""


class OutcomeUnknown(ProviderError):
    """The request may have reached the provider (timeout, reset, 5xx): never blindly repeat it."""


class CallProvider(Protocol):
    def create_call(self, credentials: ProviderCredentials, to: str, params: dict) -> RemoteCall: ...

    def fetch_call(self, credentials: ProviderCredentials, sid: str) -> RemoteCall: ...

    def find_calls(self, credentials: ProviderCredentials, to: str) -> list[RemoteCall]:
        """The account's latest calls to `to`, newest first (created_at None where it cannot be read)."""


class JobQueue(Protocol):
    def dial(self, phone_call_id: int) -> None: ...

    def fetch_remote_call(self, phone_call_id: int) -> None: ...

    def reconcile_unknown_outcomes(self, phone_call_ids: list[int]) -> None: ...

    def run_batch_operation(self, batch_operation_id: int) -> None: ...


class SignatureValidator(Protocol):
    def __call__(self, auth_token: str, url: str, params: dict, signature: str) -> bool: ...


class ContactImportJobs(Protocol):
    def run_contact_import(self, contact_import_id: int) -> None: ...
