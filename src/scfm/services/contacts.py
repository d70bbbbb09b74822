"""Use cases of contacts."""
from __future__ import annotations

from scfm.domain.errors import DeleteRefused
from scfm.domain.filters import CONTACT_FILTERS
from scfm.domain.model import Contact
from scfm.domain.values import normalize_msisdn
from scfm.services.common import Page, PageRequest, apply_attributes, apply_metadata, list_page


def create_contact(uow, account_id: int, params: dict) -> Contact:
    contact = Contact(account_id=account_id, msisdn=normalize_msisdn(params.get("msisdn")))
    apply_metadata(contact, params)
    with uow:
        contact = uow.contacts.add(contact)
        uow.commit()
    return contact


def update_contact(uow, contact_id, params: dict) -> Contact:
    with uow:
        contact = uow.contacts.get(contact_id, for_update=True)
        apply_attributes(contact, params)
        contact = uow.contacts.save(contact)
        uow.commit()
    return contact


def get_contact(uow, contact_id) -> Contact:
    with uow:
        return uow.contacts.get(contact_id)


def list_contacts(uow, q, paging: PageRequest) -> Page:
    with uow:
        return list_page(uow.contacts, CONTACT_FILTERS, q, paging)


def delete_contact(uow, contact_id) -> None:
    with uow:
        contact = uow.contacts.get(contact_id, for_update=True)
        if uow.contacts.has_dependents(contact.id):
            raise DeleteRefused("dependent callout participations or phone calls exist")
        uow.contacts.remove(contact)
        uow.commit()
