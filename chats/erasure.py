"""Retention and erasure (SPEC R3): a consumer's texts, media and transcripts removed everywhere
they are kept, while the counts stay (chats, messages and their statuses remain rows, so the
reports still count them) and so does the proof (the do-not-contact list and the consent ledger).

- `erase_consumer(number)` — the admin's *Erase consumer* and `POST /apps/api/v1/consumers/erase`:
  ends the number's active chats first, then erases; records who, when and what counts.
  Idempotent: a second erasure finds nothing more and says so.
- `sweep_retention()` — the sweeper's part: chats that ended more than the chat settings'
  `retention_days` ago lose their texts, media and transcript, in set-based batches (as the
  expiry batch), and so do the texts received, session-less texts and webhook payloads older than
  that."""
from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from chats import services
from chats.models import ACTIVE_STATUSES, Chat, DisconnectedBy, Erasure, FinishReason, Media, Message
from portal.models import ChatSettings, CrmContact, CrmEntry, DeliveryLog
from sms.models import InboundMessage, OutboundMessage, SessionlessRequest
from sms.providers.local import delete_local_media

log = logging.getLogger(__name__)

RETENTION_BATCH = 200
ERASED_PAYLOAD = {"erased": True}


def erase_consumer(number: str, *, by=None, by_name: str = "", reason: str = "") -> Erasure:
    """Remove everything the number's consumer wrote or was sent, and their CRM contact data."""
    with transaction.atomic():
        for chat in Chat.objects.filter(consumer_number=number, status__in=ACTIVE_STATUSES).order_by("pk"):
            services.end_chat(chat=chat, by=DisconnectedBy.SYSTEM, reason=FinishReason.ERASED, notify_consumer=False)
        counts = erase_chat_texts(Chat.objects.filter(consumer_number=number))
        counts["texts_sent"] = _blank_outbound(OutboundMessage.objects.filter(to_number=number))
        counts["texts_received"] = _blank_inbound(InboundMessage.objects.filter(from_number=number))
        counts["crm_contacts"] = CrmContact.objects.filter(phone_number=number).delete()[0]
        counts["crm_entries"] += _blank_entries(CrmEntry.objects.filter(record__phone_number=number))
        counts["sessionless_requests"] = _forget_recipient(number)
        counts["webhook_payloads"] = _blank_payloads(_payloads_mentioning(number))
        erasure = Erasure.objects.create(
            number=number,
            by=by,
            by_name=by_name or (by.get_username() if by is not None else ""),
            reason=reason,
            counts=counts,
        )
    log.info("erased %s: %s", number, counts)
    return erasure


def erase_chat_texts(chats) -> dict[str, int]:
    """Blank the chats' transcripts (bodies, media, the texts behind them, their CRM entries) and
    mark them erased; the rows stay. Set-based: a few statements whatever the number of chats."""
    chat_ids = list(chats.values_list("pk", flat=True))
    messages = Message.objects.filter(chat_id__in=chat_ids)
    outbound_ids = list(messages.exclude(outbound=None).values_list("outbound_id", flat=True))
    inbound_ids = list(messages.exclude(inbound=None).values_list("inbound_id", flat=True))
    counts = {"chats": len(chat_ids), "messages": messages.exclude(body="").update(body="")}
    counts["media"] = _delete_media(Media.objects.filter(message__chat_id__in=chat_ids))
    _blank_outbound(OutboundMessage.objects.filter(pk__in=outbound_ids))
    _blank_inbound(InboundMessage.objects.filter(pk__in=inbound_ids))
    counts["crm_entries"] = _blank_entries(CrmEntry.objects.filter(record__chats__in=chat_ids))
    Chat.objects.filter(pk__in=chat_ids, content_erased_at__isnull=True).update(content_erased_at=timezone.now())
    return counts


def sweep_retention(now: dt.datetime | None = None) -> int:
    """One batch of what the retention period says to erase; returns how many chats."""
    days = ChatSettings.load().retention_days
    if not days:
        return 0
    now = now or timezone.now()
    cutoff = now - dt.timedelta(days=days)
    with transaction.atomic():
        due = list(
            Chat.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(content_erased_at__isnull=True, ends_at__lt=cutoff)
            .exclude(status__in=ACTIVE_STATUSES)
            .order_by("ends_at")
            .values_list("pk", flat=True)[:RETENTION_BATCH]
        )
        if due:
            erase_chat_texts(Chat.objects.filter(pk__in=due))
        _blank_outbound(
            OutboundMessage.objects.filter(created_at__lt=cutoff, message__isnull=True)
            .filter(~Q(body="") | ~Q(media_urls=[]))
            .order_by("created_at")[:RETENTION_BATCH]
        )
        old_inbound = (
            InboundMessage.objects.filter(received_at__lt=cutoff).filter(~Q(body="") | ~Q(media=[])).order_by("received_at")
        )
        _blank_inbound(InboundMessage.objects.filter(pk__in=list(old_inbound.values_list("pk", flat=True)[:RETENTION_BATCH])))
        _blank_payloads(
            DeliveryLog.objects.filter(created_at__lt=cutoff).exclude(payload=ERASED_PAYLOAD).order_by("created_at")[:RETENTION_BATCH]
        )
    return len(due)


def _delete_media(media) -> int:
    count = 0
    for item in media:
        if item.file:
            item.file.delete(save=False)
        delete_local_media(item.source_url)
        count += 1
    media.delete()
    return count


def _blank_outbound(messages) -> int:
    ids = list(messages.values_list("pk", flat=True))
    return OutboundMessage.objects.filter(pk__in=ids).filter(~Q(body="") | ~Q(media_urls=[])).update(body="", media_urls=[])


def _blank_inbound(messages) -> int:
    for inbound in messages.exclude(media=[]):
        for item in inbound.media:
            delete_local_media(item.get("url", ""))
    return messages.filter(~Q(body="") | ~Q(media=[])).update(body="", media=[])


def _blank_entries(entries) -> int:
    return entries.filter(~Q(text="") | ~Q(data={})).update(text="", data={})


def _forget_recipient(number: str) -> int:
    """Take the number out of session-less requests; a request left without recipients loses its
    texts as well."""
    changed = 0
    for request in _mentioning(SessionlessRequest.objects.all(), "to_numbers", number):
        request.to_numbers = [n for n in request.to_numbers if n != number]
        if not request.to_numbers:
            request.messages = []
        request.save(update_fields=["to_numbers", "messages"])
        changed += 1
    return changed


def _payloads_mentioning(number: str):
    return _mentioning(DeliveryLog.objects.all(), "payload", number)


def _blank_payloads(deliveries) -> int:
    ids = [d.pk for d in deliveries]
    return DeliveryLog.objects.filter(pk__in=ids).update(payload=ERASED_PAYLOAD)


def _mentioning(queryset, field: str, text: str):
    """Rows whose JSON `field` holds `text` anywhere (as text: the same on SQLite and PostgreSQL)."""
    return queryset.annotate(_as_text=Cast(field, TextField())).filter(_as_text__contains=text)
