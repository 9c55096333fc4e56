"""The built-in CRM (SPEC S12): contacts matched by phone number, one record per conversation."""
from __future__ import annotations

import zoneinfo

from django.db import transaction

from portal.models import CrmContact, CrmEntry, CrmRecord
from portal.regions import US_STATES


def contacts_for_number(number: str) -> list[CrmContact]:
    return list(CrmContact.objects.filter(phone_number=number).order_by("pk"))


def open_record(*, reference: str, number: str, language: str = "", queue_name: str = "") -> CrmRecord:
    """Find or create the conversation's record and attach its contact: none → a new contact,
    one → that contact, several → no contact yet and `needs_contact_choice` for the agent."""
    record = CrmRecord.objects.filter(reference=reference).first()
    if record is not None:
        return record
    matches = contacts_for_number(number)
    contact = None
    if not matches:
        contact = CrmContact.objects.create(phone_number=number)
    elif len(matches) == 1:
        contact = matches[0]
    record = CrmRecord.objects.create(
        reference=reference,
        phone_number=number,
        contact=contact,
        language=language,
        queue_name=queue_name,
        needs_contact_choice=contact is None,
    )
    add_entry(record, "opened", f"Conversation {reference}, language {language}, queue {queue_name}".strip())
    return record


def add_entry(record: CrmRecord | None, kind: str, text: str = "", **data) -> CrmEntry | None:
    if record is None:
        return None
    return CrmEntry.objects.create(record=record, kind=kind, text=text, data=data)


def choose_contact(*, record: CrmRecord, contact: CrmContact | None = None, new_name: str = "") -> CrmContact:
    """The agent's pick among several matches, or a new contact."""
    with transaction.atomic():
        if contact is None:
            contact = CrmContact.objects.create(phone_number=record.phone_number, name=new_name)
        elif contact.phone_number != record.phone_number:
            raise ValueError("That contact does not have this conversation's phone number.")
        record.contact = contact
        record.needs_contact_choice = False
        record.save(update_fields=["contact", "needs_contact_choice", "updated_at"])
        add_entry(record, "contact_chosen", str(contact), contact_id=contact.pk)
    return contact


def set_contact_place(contact: CrmContact, *, time_zone: str | None = None, state: str | None = None) -> CrmContact:
    """Where the contact is, for their quiet hours (SPEC R1): a time zone and a US state, each
    empty for "the number's area code decides". Raises ValueError with a sentence."""
    fields = []
    if time_zone is not None:
        if time_zone and time_zone not in zoneinfo.available_timezones():
            raise ValueError("Pick a time zone from the list.")
        contact.time_zone = time_zone
        fields.append("time_zone")
    if state is not None:
        if state and state not in US_STATES:
            raise ValueError("Pick a US state from the list.")
        contact.state = state
        fields.append("state")
    if fields:
        contact.save(update_fields=[*fields, "updated_at"])
    return contact
