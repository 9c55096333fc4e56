"""The inbound path behind the webhook (DESIGN rule 11): a text is stored `pending` and
acknowledged; batch workers then run the conversation for many pending texts at a time.

    webhook / simulator ─▶ store_text()   one INSERT (MessageSid UNIQUE: a retry is a no-op),
                                          commit, then wake() — nothing else on the request path
    wake()              ─▶ one django-q2 task `run` for many texts (a Redis key, or the
                           InboundWake row, says one is already on its way)
    run() / sweep()     ─▶ process_batch() until nothing is pending: texts claimed in arrival
                           order (FOR UPDATE SKIP LOCKED on PostgreSQL), handled by chats.flow in
                           one transaction (run again with a savepoint per text when one fails),
                           in rounds of one text per consumer (`_rounds`)

Order: a consumer's texts to one portal number are handled in arrival order. A batch takes a
pair's texts only from the pair's oldest pending one on, and only as many as it holds in a row:
a text whose earlier text is still pending in another worker's hands (or waiting for a retry)
is left for later. The flow locks each chat as it goes, so workers on different pairs never wait
for each other.

Failure: a text whose handling raises is rolled back alone (the batch runs again with each text
in its own savepoint), the others commit; it is tried again after RETRY_DELAYS and, after
MAX_ATTEMPTS tries, marked failed with its error (admin › Inbound messages). A worker killed
mid-batch commits nothing: every text of its batch is still pending, and the next run or the
sweeper handles it once."""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections import Counter

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from chats import assignment, flow, held, inbound_facts
from portal import shared_redis
from portal.realtime import batched_pushes
from portal.singletons import cached_singletons
from sms.models import InboundMessage, InboundState, InboundWake
from sms.send_queue import batched_sends
from sms.statuses import held_status_events

log = logging.getLogger(__name__)

BATCH_SIZE = 50
# From this many texts a batch's round reads their numbers, chats, opt-outs and the command words once.
BATCH_FACTS_FROM = 3
MAX_ATTEMPTS = 3
# Seconds before the 2nd and 3rd tries of a text whose handling failed.
RETRY_DELAYS = (5, 60)
# One task handles batches this long at most, then hands on to a fresh task (django-q2 kills a
# task after its timeout, 60 s).
RUN_SECONDS = 20
# How long a wake request is trusted with Redis; a task lost before it started is replaced after
# this, and the sweeper handles what is pending meanwhile.
WAKE_TTL_SECONDS = 30
WAKE_KEY = "tern:inbound-wake"
RUN_TASK = "chats.intake.run"


# --- the request path --------------------------------------------------------------------------


def store_text(*, message_sid: str, from_number: str, to_number: str, body: str, media: list[dict]) -> InboundMessage | None:
    """Store one inbound text durably, pending; None when its MessageSid is stored already (a
    provider retry). Raises DatabaseError when it could not be stored: the caller must not
    acknowledge it. After commit a batch worker is woken. Outside a transaction, a connection
    that turns out dead (the database restarted since the pool opened it) is replaced once."""
    fields = dict(message_sid=message_sid, from_number=from_number, to_number=to_number, body=body, media=media)
    try:
        return _store(**fields)
    except (OperationalError, InterfaceError):
        if connection.in_atomic_block:
            raise
        log.warning("inbound %s: the database connection failed; trying once on a new one", message_sid)
        connection.close()
        return _store(**fields)


def _store(*, message_sid: str, from_number: str, to_number: str, body: str, media: list[dict]) -> InboundMessage | None:
    try:
        with transaction.atomic():
            inbound = InboundMessage.objects.create(
                message_sid=message_sid,
                from_number=from_number,
                to_number=to_number,
                body=body.replace("\x00", ""),  # PostgreSQL text cannot hold NUL; the rest is kept
                media=media,
            )
            asked = _ask_in_database() if not settings.REDIS_URL else None
    except IntegrityError:
        if InboundMessage.objects.filter(message_sid=message_sid).exists():
            log.info("inbound %s already stored: ignored", message_sid)
            return None
        raise
    transaction.on_commit(lambda: wake(asked=asked))
    return inbound


def wake(*, asked: bool | None = None) -> None:
    """Make sure a batch worker runs after this: enqueue the `run` task unless one is already
    on its way. `asked`: whether the caller already set the database flag (None: ask now). A
    failed enqueue is logged and never fails the caller; the sweeper handles pending texts."""
    try:
        if asked is None:
            asked = _ask()
        if asked:
            from django_q.tasks import async_task

            async_task(RUN_TASK, task_name="inbound-batch", save=False, broker=_broker())
    except Exception:  # noqa: BLE001 — the text is stored; the sweeper handles it
        log.exception("inbound batch task not enqueued; the sweeper handles pending texts")


def _ask() -> bool:
    """Set the wake flag; True when this caller set it (and so must enqueue the task)."""
    if settings.REDIS_URL:
        return bool(shared_redis.client().set(WAKE_KEY, 1, nx=True, ex=WAKE_TTL_SECONDS))
    return _ask_in_database()


def _ask_in_database() -> bool:
    """One statement: set the flag (creating its row if need be); a row count of 1 says this
    caller set it. PostgreSQL and SQLite both speak this upsert."""
    table = connection.ops.quote_name(InboundWake._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (id, requested) VALUES (1, %s) "
            f"ON CONFLICT (id) DO UPDATE SET requested = %s WHERE {table}.requested = %s",
            [True, True, False],
        )
        return cursor.rowcount == 1


def _clear_wake() -> None:
    if settings.REDIS_URL:
        shared_redis.client().delete(WAKE_KEY)
    else:
        InboundWake.objects.filter(pk=1, requested=True).update(requested=False)


def _broker():
    from sms.send_queue import _broker as process_broker

    return process_broker()


# --- behind it ---------------------------------------------------------------------------------


def run() -> int:
    """The wake-up task: handle pending texts batch after batch until none is left (or
    RUN_SECONDS passed: then a fresh task goes on). Returns how many texts it handled."""
    try:
        _clear_wake()
    except Exception:  # noqa: BLE001 — Redis away: the flag expires by itself
        log.exception("inbound wake flag not cleared")
    handled = _drain(RUN_SECONDS)
    return handled


def sweep() -> int:
    """The safety net (run by the sweepers every few seconds): pending texts whose task was
    lost, never enqueued, or that wait for a retry. It clears the wake flag too, so a flag left
    set by a task that never ran (its enqueue failed) cannot keep the webhooks from waking one."""
    return run()  # the same steps as the task: clear the flag, then handle what is pending


def process_pending() -> int:
    """Handle everything pending now, in this process: for tests and tools."""
    return _drain(None)


def _drain(seconds: float | None) -> int:
    handled = 0
    deadline = None if seconds is None else time.monotonic() + seconds
    while True:
        count = process_batch()
        handled += count
        if count == 0:
            return handled
        if deadline is not None and time.monotonic() > deadline:
            wake()
            return handled


def process_batch(limit: int = BATCH_SIZE) -> int:
    """Claim up to `limit` pending texts and handle them in one transaction: the settings read
    once, its pushes and send tasks leaving together after the commit. Returns how many texts it
    handled (failed tries included).

    The texts run one after another with no savepoint of their own (two statements a text
    saved), and what its texts write that nobody reads before it commits is written together at
    the end (`chats.held`): nearly every batch succeeds whole. When one text raises, the batch
    is rolled back, nothing of it done, and run again from its claim with each text in its own
    savepoint, so only that text (and its consumer's later ones) waits for a retry."""
    try:
        return _run_batch(limit, alone=False)
    except _BatchFailed as failed:
        log.info("inbound batch rolled back (%s): it runs again, each text on its own", failed)
        return _run_batch(limit, alone=True)


class _BatchFailed(Exception):
    """A batch run without savepoints raised: it is rolled back and run again."""


def _run_batch(limit: int, *, alone: bool) -> int:
    """One batch; `alone`: each text in its own savepoint (a failure rolls back only its text)."""
    holding = contextlib.nullcontext() if alone else held.held_writes()
    with cached_singletons(), batched_pushes(), batched_sends(), assignment.batched_assignments(), holding:
        with transaction.atomic(), held_status_events():
            texts = _claim(limit)
            failed: set[tuple[str, str]] = set()
            done: dict[str, list[int]] = {}  # outcome: texts
            for number, texts_of_round in enumerate(_rounds(texts)):
                if number and not alone:
                    _write_held()  # the next round reads the chats again
                # Below a few texts, each text's own lookup (one or two queries) costs less.
                facts = inbound_facts.BatchFacts(texts_of_round) if len(texts_of_round) >= BATCH_FACTS_FROM else None
                for text in texts_of_round:
                    pair = (text.to_number, text.from_number)
                    if pair in failed:
                        continue  # a consumer's later text waits while their earlier one waits for its retry
                    outcome = _handle(text, facts) if alone else _handle_in_batch(text, facts)
                    if outcome is None:
                        failed.add(pair)
                    else:
                        done.setdefault(outcome, []).append(text.pk)
            if not alone:
                _write_held()
            _mark_done(done)
    return len(texts)


def _rounds(texts: list[InboundMessage]) -> list[list[InboundMessage]]:
    """A batch's texts in rounds: each pair's first text, then each pair's second, and so on,
    each round in arrival order. A round's facts are read once for all its texts (a pair's text
    may open or end its chat or opt out, so its next one needs them read again): a batch where
    consumers texted twice costs a few more bulk reads, not a lookup for every second text."""
    rounds: list[list[InboundMessage]] = []
    seen: Counter = Counter()
    for text in texts:
        pair = (text.to_number, text.from_number)
        if seen[pair] == len(rounds):
            rounds.append([])
        rounds[seen[pair]].append(text)
        seen[pair] += 1
    return rounds


def _write_held() -> None:
    try:
        held.write_held()
    except Exception as exc:  # noqa: BLE001 — run again, each text on its own
        raise _BatchFailed("what the batch held could not be written") from exc


def _mark_done(done: dict[str, list[int]]) -> None:
    """The batch's handled texts marked done, one UPDATE per outcome, in the batch's transaction."""
    now = timezone.now()
    for outcome, pks in done.items():
        InboundMessage.objects.filter(pk__in=pks).update(
            state=InboundState.DONE, outcome=outcome, processed_at=now, error="", next_attempt_at=None
        )


def _claim(limit: int) -> list[InboundMessage]:
    now = timezone.now()
    earlier = (
        InboundMessage.objects.filter(
            state=InboundState.PENDING,
            to_number=OuterRef("to_number"),
            from_number=OuterRef("from_number"),
            pk__lt=OuterRef("pk"),
        )
        .order_by()
        .values("to_number")
        .annotate(count=Count("pk"))
        .values("count")
    )
    rows = list(
        InboundMessage.objects.select_for_update(skip_locked=True)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now), state=InboundState.PENDING)
        .annotate(earlier=Coalesce(Subquery(earlier, output_field=IntegerField()), Value(0)))
        .order_by("pk")[:limit]
    )
    # Per pair, the texts this batch holds in a row from the pair's oldest pending one.
    in_row: Counter = Counter()
    blocked: set = set()
    claimed = []
    for row in rows:
        pair = (row.to_number, row.from_number)
        if pair in blocked or row.earlier != in_row[pair]:
            blocked.add(pair)
            continue
        in_row[pair] += 1
        claimed.append(row)
    return claimed


def _handle_in_batch(text: InboundMessage, facts: inbound_facts.BatchFacts | None) -> str:
    """Handle one text in the batch's own transaction; a failure rolls back the whole batch."""
    try:
        return flow.handle_inbound(text, facts)
    except Exception as exc:  # noqa: BLE001 — run again, each text on its own
        raise _BatchFailed(f"inbound {text.message_sid} failed") from exc


def _handle(text: InboundMessage, facts: inbound_facts.BatchFacts | None) -> str | None:
    """Handle one text in its own savepoint (its replies' status events held with it). Returns
    its outcome, or None when it failed (rolled back, retry noted)."""
    try:
        with transaction.atomic(), held_status_events():
            return flow.handle_inbound(text, facts)
    except Exception as exc:  # noqa: BLE001 — one text's failure never blocks the batch
        _failed_try(text, exc)
        return None


def _failed_try(text: InboundMessage, exc: Exception) -> None:
    attempts = text.attempts + 1
    final = attempts >= MAX_ATTEMPTS
    log.exception(
        "inbound %s from=%s to=%s: try %d of %d failed%s",
        text.message_sid, text.from_number, text.to_number, attempts, MAX_ATTEMPTS, "; given up" if final else "",
    )
    now = timezone.now()
    delay = RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1]
    InboundMessage.objects.filter(pk=text.pk).update(
        attempts=attempts,
        error=f"{type(exc).__name__}: {exc}"[:2000],
        state=InboundState.FAILED if final else InboundState.PENDING,
        next_attempt_at=None if final else now + dt.timedelta(seconds=delay),
        processed_at=now if final else None,
    )


def retry_failed(pks) -> int:
    """Admin action: failed texts are pending again, tried at once (a fresh count of tries)."""
    count = InboundMessage.objects.filter(pk__in=list(pks), state=InboundState.FAILED).update(
        state=InboundState.PENDING, attempts=0, next_attempt_at=None, processed_at=None
    )
    if count:
        transaction.on_commit(wake)
    return count


def receive_sms(*, message_sid: str, from_number: str, to_number: str, body: str, media: list[dict]) -> tuple[InboundMessage | None, str]:
    """Store a text and handle it at once, in this process: what tests and tools use to drive a
    conversation step by step (the webhook stores and leaves the rest to the batch worker).
    Returns the stored row (None for a duplicate MessageSid) and what the portal did with it."""
    inbound = store_text(message_sid=message_sid, from_number=from_number, to_number=to_number, body=body, media=media)
    if inbound is None:
        return None, "duplicate"
    process_pending()
    inbound.refresh_from_db(fields=["state", "outcome", "error", "attempts"])
    return inbound, inbound.outcome
