"""Who holds an outbound message (SPEC S11 step 6): its `lease_until`. The task queue holds it
after an enqueue (the value is the task's token, `sms.send_queue`); a send task takes it with
`claim` (one conditional UPDATE for the task's messages, a token of its own), gives back what it
did not hand to the provider (`give_back`), and while it holds them this process renews their
leases (`keeper`), so only a dead worker lets a lease run out and the sweeper sends again. The
sending itself, and the order per recipient, are `sms.tasks`."""
from __future__ import annotations

import datetime as dt
import logging
import threading

from django.db import connection
from django.db.models import Exists, F, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from sms.models import MessageStatus, OutboundMessage

log = logging.getLogger(__name__)

# A worker holds a message this long past its last renewal while it calls the provider; the
# lease is renewed every LEASE_RENEW_SECONDS while the call is in flight, so only a dead worker
# lets it run out (and the sweeper, every few seconds, sends again soon after).
SEND_LEASE = dt.timedelta(seconds=15)
LEASE_RENEW_SECONDS = 5.0


def sendable(now: dt.datetime, *leases: dt.datetime | None) -> Q:
    """Queued, no sid yet, due, and free or leased with one of `leases` (the tokens the task
    queue handed the caller). A message leased with another job's token than its own was handed
    to this task too: it may be claimed here as well as there; the claim, which replaces the
    token with one of its own, still lets exactly one of the two send it."""
    free_or_ours = Q(lease_until__isnull=True) | Q(lease_until__lte=now)
    tokens = {lease for lease in leases if lease is not None}
    if tokens:
        free_or_ours |= Q(lease_until__in=tokens)
    return (
        Q(status=MessageStatus.QUEUED, provider_sid__isnull=True)
        & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        & free_or_ours
    )


def jobs_sendable(jobs: list[tuple[int, dt.datetime | None]], now: dt.datetime) -> Q:
    """The jobs' (id, token) messages that are `sendable` with the jobs' tokens."""
    return Q(pk__in=[pk for pk, _ in jobs]) & sendable(now, *(lease for _, lease in jobs))


def unsent_to(to_number, from_number):
    """The messages to this recipient from this number still queued and not taken (the numbers
    may be `OuterRef`s)."""
    return OutboundMessage.objects.filter(
        to_number=to_number, from_number=from_number, status=MessageStatus.QUEUED, provider_sid__isnull=True
    )


def earlier_unsent(message: OutboundMessage):
    return unsent_to(message.to_number, message.from_number).filter(pk__lt=message.pk)


def claim(due: list[OutboundMessage], leases: dict[int, dt.datetime | None]) -> set[int]:
    """One conditional UPDATE for a task's messages, so of two callers exactly one goes on with
    each, and none while an earlier message to the same recipient outside the task is unsent (the
    task's own earlier ones go first, or the later ones give their claim back). A new lease token
    marks what this call took, read back when it took some but not all; the keeper renews them
    from now on. The attempt's start is kept from an earlier attempt whose outcome is still
    unknown."""
    if not due:
        return set()
    now = timezone.now()
    token = now + SEND_LEASE
    pks = [m.pk for m in due]
    earlier_elsewhere = (
        unsent_to(OuterRef("to_number"), OuterRef("from_number")).filter(pk__lt=OuterRef("pk")).exclude(pk__in=pks)
    )
    count = (
        OutboundMessage.objects.filter(jobs_sendable([(pk, leases[pk]) for pk in pks], now))
        .exclude(Exists(earlier_elsewhere))
        .update(
            lease_until=token,
            attempts=F("attempts") + 1,
            attempt_started_at=Coalesce(F("attempt_started_at"), now),
            updated_at=now,
        )
    )
    if count == len(pks) or not count:
        claimed = set(pks) if count else set()
    else:
        claimed = set(OutboundMessage.objects.filter(pk__in=pks, lease_until=token).values_list("pk", flat=True))
    keeper.hold(claimed)
    return claimed


def give_back(message: OutboundMessage, next_attempt_at: dt.datetime | None) -> None:
    """Undo this task's claim of a message it did not hand to the provider: no lease, the attempt
    not counted, its start as it was, tried again at `next_attempt_at`."""
    keeper.let_go([message.pk])
    OutboundMessage.objects.filter(pk=message.pk).update(
        lease_until=None,
        next_attempt_at=next_attempt_at,
        attempts=message.attempts,
        attempt_started_at=message.attempt_started_at,
        updated_at=timezone.now(),
    )


class _LeaseKeeper:
    """Renews the leases of this process's sends in flight, from one daemon thread, every
    LEASE_RENEW_SECONDS: a send slower than SEND_LEASE keeps its message, a killed worker's
    lease runs out soon after."""

    def __init__(self):
        self._held: set[int] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # Its own timer, not `time.sleep`: a test that stands in for sms.tasks' `time` (the
        # sending limit's wait) must not turn this thread into a busy loop.
        self._pause = threading.Event()

    def hold(self, message_ids) -> None:
        if not message_ids:
            return
        with self._lock:
            self._held.update(message_ids)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sms-lease-keeper", daemon=True)
                self._thread.start()

    def let_go(self, message_ids) -> None:
        with self._lock:
            self._held.difference_update(message_ids)

    def _run(self) -> None:
        while True:
            self._pause.wait(LEASE_RENEW_SECONDS)  # never set: a sleep
            with self._lock:
                held = list(self._held)
            if not held:
                continue
            try:
                OutboundMessage.objects.filter(
                    pk__in=held, status=MessageStatus.QUEUED, provider_sid__isnull=True
                ).update(lease_until=timezone.now() + SEND_LEASE)
            except Exception:  # noqa: BLE001 — the lease may run out; the claim still sends once
                log.exception("sms lease renewal failed for ids %s", held)
            finally:
                connection.close()


keeper = _LeaseKeeper()
