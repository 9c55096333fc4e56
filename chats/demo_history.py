"""A week of made-up history for the demo's reports (issue 13): `manage.py seed_demo` adds it
once, so a person who signs in as sam finds every report filled. Deterministic (one seeded
random generator); the seven days before today, none of today (the live monitor's "today" and
the adapter's stats start empty). Every chat is finished, the latest served ones with their CRM records; one
consumer is on the do-not-contact list. Nothing is sent (the portal's texts
are written delivered, as if long gone). Consumer numbers +1555099xxxx mark it."""
from __future__ import annotations

import contextlib
import datetime as dt
import random

from django.db import models
from django.utils import timezone

from chats.models import (
    Author,
    Call,
    CallStatus,
    Chat,
    ChatStatus,
    ChatType,
    DisconnectedBy,
    FinishReason,
    Message,
    Participant,
    ParticipantStatus,
    ParticipantType,
    StartType,
    Transfer,
)
from chats.crm_records import close_crm_record, open_crm_record
from portal.models import AgentProfile, AgentStatus, AgentStatusChange, CrmContact, CrmEntry, CrmRecord
from queues.models import Queue
from sms.models import ConsentSource, MessageStatus, MessageStatusEvent, OutboundMessage, PhoneNumber
from sms.pipeline import add_do_not_contact

HISTORY_PREFIX = "+1555099"
CRM_RECORDS = 12  # the latest served chats get records: enough to browse, quick to seed
CONTACT_NAMES = ["Dana Scully", "Fox Mulder", "Walter Skinner", "Monica Reyes", "John Doggett", "Melvin Frohike", "Ringo Langly"]
DAYS = 7


@contextlib.contextmanager
def _times_as_given(*model_classes):
    """Let bulk_create keep the times set on the rows (auto_now_add fields would say "now")."""
    fields = [f for m in model_classes for f in m._meta.fields if isinstance(f, models.DateTimeField) and f.auto_now_add]
    for field in fields:
        field.auto_now_add = False
    try:
        yield
    finally:
        for field in fields:
            field.auto_now_add = True


def seed_history(*, incoming: str, outbound: str) -> int:
    """The week's chats, calls and agents' statuses; returns how many chats (0: already there)."""
    if Chat.objects.filter(consumer_number__startswith=HISTORY_PREFIX).exists():
        return 0
    agents = list(AgentProfile.objects.filter(user__username__in=["alice", "bob"]).order_by("user__username"))
    queues = list(Queue.objects.filter(name__in=["Billing", "Tech"], parent__isnull=False).order_by("name"))
    number = PhoneNumber.objects.get(number=incoming)
    outbound_number = PhoneNumber.objects.get(number=outbound)
    if len(agents) < 2 or len(queues) < 2:
        return 0
    rng = random.Random(20301)
    today = timezone.localdate()
    plan = _Plan(rng, agents, queues, number, outbound_number)
    for back in range(DAYS, 0, -1):
        plan.day(today - dt.timedelta(days=back))
    with _times_as_given(Chat, Participant, Message, Transfer, OutboundMessage, MessageStatusEvent, Call):
        return plan.save()


class _Plan:
    def __init__(self, rng, agents, queues, number, outbound):
        self.rng, self.agents, self.queues, self.number, self.outbound = rng, agents, queues, number, outbound
        self.chats: list[tuple[Chat, list[tuple]]] = []  # a chat and its stints and messages
        self.statuses: list[AgentStatusChange] = []
        self.calls: list[Call] = []
        self.transfers: list[tuple] = []
        self.serial = 0

    def _at(self, day: dt.date, hour: float) -> dt.datetime:
        return timezone.make_aware(dt.datetime.combine(day, dt.time.min)) + dt.timedelta(hours=hour)

    def day(self, day: dt.date) -> None:
        alice, bob = self.agents
        for agent, spans in [(alice, [(8, 12, "available"), (12, 12.5, "away"), (12.5, 17, "available")]), (bob, [(11, 20, "available")])]:
            for start, end, status in spans:
                self.statuses.append(AgentStatusChange(agent=agent, status=status, at=self._at(day, start)))
            self.statuses.append(AgentStatusChange(agent=agent, status=AgentStatus.OFFLINE, at=self._at(day, spans[-1][1])))
        busy = 0.6 if day.weekday() >= 5 else 1.0
        for _ in range(int(self.rng.randint(22, 40) * busy)):
            hour = min(19.9, max(8.0, self.rng.gauss(13.5, 3.0)))
            self._chat(self._at(day, hour))
        for n in range(3):
            self.calls.append(
                Call(
                    call_sid=f"CAdemo{day:%Y%m%d}{n}", caller_number=f"{HISTORY_PREFIX}9{n:03d}", queue=self.rng.choice(self.queues),
                    status=CallStatus.ENDED, wait_time_sms_status=self.rng.choice(["allowed", "allowed", "denied", "no_response"]),
                    created_at=self._at(day, 10 + 3 * n),
                )
            )

    def _chat(self, start: dt.datetime) -> None:
        rng = self.rng
        self.serial += 1
        consumer = f"{HISTORY_PREFIX}{self.serial:04d}"
        queue = rng.choice(self.queues)
        agent = self._on_duty(start)
        if rng.random() < 0.15:
            return self._outbound(start, consumer, queue, agent)
        queued = start + dt.timedelta(seconds=rng.randint(15, 70))
        roll = rng.random()
        chat = Chat(
            consumer_number=consumer, portal_number=self.number, queue=queue, status=ChatStatus.FINISHED, chat_type=ChatType.SMS,
            created_at=start, queued_at=queued, language_chosen=True,
        )
        messages = [(Author.CONSUMER, None, start, "Hi, I need help with my account"),
                    (Author.SYSTEM, None, start + dt.timedelta(seconds=2), "Reply 1 for Billing, 2 for Tech.")]
        stints = []
        if roll < 0.06:  # a short abandon: gone within seconds
            chat.ends_at = queued + dt.timedelta(seconds=rng.randint(2, 8))
            chat.finish_reason, chat.disconnected_by = FinishReason.END_USER_EXIT, DisconnectedBy.END_USER
        elif roll < 0.18:  # abandoned
            chat.ends_at = queued + dt.timedelta(seconds=rng.randint(40, 120))
            chat.finish_reason, chat.disconnected_by = FinishReason.EXPIRED_UNANSWERED, DisconnectedBy.SYSTEM
        else:
            wait = rng.expovariate(1 / 35)
            chat.assigned_at = queued + dt.timedelta(seconds=wait)
            chat.ends_at = chat.assigned_at + dt.timedelta(minutes=rng.uniform(3, 16))
            chat.agent, chat.start_type = agent, StartType.AUTO
            chat.finish_reason, chat.disconnected_by = FinishReason.AGENT_ENDED, DisconnectedBy.AGENT
            reply = chat.assigned_at + dt.timedelta(seconds=rng.randint(8, 90))
            messages += [(Author.AGENT, agent, reply, "Hi, this is %s. How can I help?" % agent),
                         (Author.CONSUMER, None, reply + dt.timedelta(minutes=1), "My last bill looks wrong."),
                         (Author.AGENT, agent, chat.ends_at - dt.timedelta(seconds=30), "All sorted. Anything else?")]
            if rng.random() < 0.06:  # handed to the other agent two minutes in
                handed = chat.assigned_at + dt.timedelta(minutes=2)
                chat.agent = self._other(agent)
                stints += [(agent, chat.assigned_at, handed), (chat.agent, handed, chat.ends_at)]
                self.transfers.append((chat, agent, chat.agent, handed))
            else:
                stints.append((agent, chat.assigned_at, chat.ends_at))
        self.chats.append((chat, stints, messages))

    def _on_duty(self, start: dt.datetime) -> AgentProfile:
        """Alice works 8–17 with a break at 12, Bob 11–20; between 11 and 17, either."""
        alice, bob = self.agents
        hour = timezone.localtime(start).hour + timezone.localtime(start).minute / 60
        if hour < 11:
            return alice
        if hour >= 17 or 12 <= hour < 12.5:
            return bob
        return self.rng.choice(self.agents)

    def _other(self, agent: AgentProfile) -> AgentProfile:
        alice, bob = self.agents
        return bob if agent == alice else alice

    def _outbound(self, start, consumer, queue, agent) -> None:
        ends = start + dt.timedelta(minutes=self.rng.uniform(2, 10))
        chat = Chat(
            consumer_number=consumer, portal_number=self.outbound, queue=queue, status=ChatStatus.FINISHED,
            chat_type=ChatType.OUTBOUND_SMS, start_type=StartType.OUTBOUND, agent=agent, created_at=start,
            assigned_at=start, ends_at=ends, finish_reason=FinishReason.AGENT_ENDED, disconnected_by=DisconnectedBy.AGENT,
        )
        messages = [(Author.AGENT, agent, start, "Hi, your replacement card has shipped."),
                    (Author.CONSUMER, None, start + dt.timedelta(minutes=1), "Thanks!")]
        self.chats.append((chat, [(agent, start, ends)], messages))

    def save(self) -> int:
        Chat.objects.bulk_create([chat for chat, _, _ in self.chats])
        stints, entries = [], []
        for chat, chat_stints, messages in self.chats:
            stints += [
                Participant(chat=chat, type=ParticipantType.AGENT, agent=agent, status=ParticipantStatus.ENDED, connected_at=start, ended_at=end)
                for agent, start, end in chat_stints
            ]
            entries += [(chat, author, agent, at, body) for author, agent, at, body in messages]
        Participant.objects.bulk_create(stints)
        sent = OutboundMessage.objects.bulk_create(
            [
                OutboundMessage(
                    to_number=chat.consumer_number, from_number=chat.portal_number.number, portal_number=chat.portal_number, body=body,
                    kind="agent" if author == Author.AGENT else "system", status=MessageStatus.DELIVERED, segments=1,
                    created_at=at, provider_sid=f"SMdemo{chat.consumer_number[-8:]}{n:03d}",
                )
                for n, (chat, author, agent, at, body) in enumerate(entries)
                if author != Author.CONSUMER
            ]
        )
        MessageStatusEvent.objects.bulk_create(
            MessageStatusEvent(message=message, status=status, source=source, at=message.created_at + dt.timedelta(seconds=delay))
            for message in sent
            for status, source, delay in [(MessageStatus.SENT, "portal", 1), (MessageStatus.DELIVERED, "provider", 4)]
        )
        outbound = iter(sent)
        Message.objects.bulk_create(
            Message(chat=chat, author=author, agent=agent, body=body, created_at=at, outbound=None if author == Author.CONSUMER else next(outbound))
            for chat, author, agent, at, body in entries
        )
        AgentStatusChange.objects.bulk_create(self.statuses)
        Call.objects.bulk_create(self.calls)
        Transfer.objects.bulk_create(
            Transfer(chat=chat, from_agent=giver, to_agent=taker, status=Transfer.Status.ENDED, began_at=at, ended_at=at)
            for chat, giver, taker, at in self.transfers
        )
        self._crm_and_consent()
        return len(self.chats)

    def _crm_and_consent(self) -> None:
        """The CRM records an agent's chats leave (contacts, the transcript as posted), a few
        contacts with names, and one consumer who texted STOP: the admin's CRM pages and the
        do-not-contact list have something to show."""
        served = [chat for chat, stints, _ in self.chats if stints][-CRM_RECORDS:]
        for chat in served:
            open_crm_record(chat)
            close_crm_record(chat)
            CrmRecord.objects.filter(pk=chat.crm_record_id).update(created_at=chat.assigned_at, updated_at=chat.ends_at)
            CrmEntry.objects.filter(record_id=chat.crm_record_id).update(at=chat.ends_at)
        for chat, name in zip(served[::2], CONTACT_NAMES):
            CrmContact.objects.filter(records__chats=chat).update(name=name, email=f"{name.split()[0].lower()}@example.com")
        if served:
            add_do_not_contact(
                consumer_number=served[-1].consumer_number, portal_number=self.number.number, source=ConsentSource.STOP, text="STOP"
            )
