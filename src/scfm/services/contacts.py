"""Use cases of contacts."""
from __future__ import annotations

from typing import Any

from scfm.domain.errors import DeleteRefused
from scfm.domain.filters import CONTACT_FILTERS
from scfm.domain.model import Contact, stored
from scfm.domain.ports import UnitOfWork
from scfm.domain.values import normalize_msisdn
from scfm.services.common import Page, PageRequest, apply_attributes, apply_metadata, list_page


def create_contact(uow: UnitOfWork, account_id: int, params: dict[str, Any]) -> Contact:
    contact = Contact(account_id=account_id, msisdn=normalize_msisdn(params.get("msisdn")))
    apply_metadata(contact, params)
    with uow:
        contact = uow.contacts.add(contact)
        uow.commit()
    return contact


def update_contact(uow: UnitOfWork, contact_id: int, params: dict[str, Any]) -> Contact:
    with uow:
        contact = uow.contacts.get(contact_id, for_update=True)
        apply_attributes(contact, params)
        contact = uow.contacts.save(contact)
        uow.commit()
    return contact


def get_contact(uow: UnitOfWork, contact_id: int) -> Contact:
    with uow:
        return uow.contacts.get(contact_id)


def list_contacts(uow: UnitOfWork, q: Any, paging: PageRequest) -> Page:
    with uow:
        return list_page(uow.contacts, CONTACT_FILTERS, q, paging)


def delete_contact(uow: UnitOfWork, contact_id: int) -> None:
    with uow:
        contact = uow.contacts.get(contact_id, for_update=True)
        if uow.contacts.has_dependents(stored(contact.id)):
            raise DeleteRefused("dependent callout participations or phone calls exist")
        uow.contacts.remove(contact)
        uow.commit()
