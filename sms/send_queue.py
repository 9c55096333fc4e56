"""The send queue: outbound messages handed to django-q2's send tasks after commit, in few tasks
and one broker trip (SPEC S11 step 5). A message is leased to the task queue for ENQUEUE_GRACE
(its `lease_until`, handed to the task as its token); an enqueue that fails is logged and never
fails the caller, and the outbound sweeper (sms.tasks) sends the message once the grace is over."""
from __future__ import annotations

import datetime as dt
import logging
import threading

from django.utils import timezone

from portal.aftercommit import AfterCommitBatch
from sms.models import OutboundMessage

log = logging.getLogger(__name__)

# How long the task queue holds a message after an enqueue before the sweeper sends it itself
# (the enqueue failed, or the broker or the worker lost the task). Longer than a task usually
# waits in the queue; when the queue is slower, the second task finds the message taken or sent.
# Short enough that texts a killed worker took with it go out within half a minute.
ENQUEUE_GRACE = dt.timedelta(seconds=25)


# Replies of one batch go to the task queue in tasks of at most this many messages; one
# recipient's replies always in the same task, in the order they were queued.
SEND_TASK_SIZE = 25
SEND_ONE = "sms.tasks.send_message"
SEND_MANY = "sms.tasks.send_messages"


def enqueue_send(message: OutboundMessage) -> None:
    """Hand the message to the send task after commit, with its lease as the task's token. An
    enqueue that fails (the broker is down) never fails the caller: it is logged, and the sweeper
    sends the message when the lease runs out."""
    enqueue_sends([message])


def enqueue_sends(messages: list[OutboundMessage]) -> None:
    """`enqueue_send` for many messages: after commit, one trip to the broker and few tasks
    (`send_tasks`) instead of one per message."""
    _sends.add([(message.pk, message.lease_until, message.to_number) for message in messages])


def batched_sends():
    """Enqueue the sends of everything committed inside the block together when it ends: for
    work that commits many replies at once, like a batch of inbound texts."""
    return _sends.collecting()


def send_tasks(jobs: list[tuple]) -> list[list[tuple]]:
    """Split send jobs (id, lease, recipient) into tasks of at most SEND_TASK_SIZE: each
    recipient's jobs stay together and in order, so one task sends them one after the other."""
    by_recipient: dict[str, list[tuple]] = {}
    for job in jobs:
        by_recipient.setdefault(job[2], []).append(job)
    tasks: list[list[tuple]] = [[]]
    for group in by_recipient.values():
        if tasks[-1] and len(tasks[-1]) + len(group) > SEND_TASK_SIZE:
            tasks.append([])
        tasks[-1].extend(group)
    return [task for task in tasks if task]


def _enqueue_jobs(jobs: list[tuple]) -> None:
    try:
        broker = _OneTrip(_broker())
    except Exception:  # noqa: BLE001 — each enqueue below tries (and logs) on its own
        broker = None
    for task in send_tasks(jobs):
        _enqueue_task([(pk, lease) for pk, lease, _ in task], broker=broker)
    if broker is not None:
        try:
            broker.flush()
        except Exception:  # noqa: BLE001 — whatever the broker raises, the sweeper catches up
            log.exception(
                "%d send jobs not enqueued (ids %s…); the sweeper sends them after %ss",
                len(jobs), jobs[0][0], int(ENQUEUE_GRACE.total_seconds()),
            )


_brokers = threading.local()


def _broker():
    """The process's django-q2 broker, one per thread: django-q2 builds a new one (a new Redis
    connection) for every task unless given one."""
    from django_q.brokers import get_broker

    if getattr(_brokers, "broker", None) is None:
        _brokers.broker = get_broker()
    return _brokers.broker


class _OneTrip:
    """A django-q2 broker that keeps the tasks `async_task` hands it and pushes them together
    when flushed: one pipelined round trip to Redis, or one INSERT with the ORM broker. Other
    brokers get them one by one."""

    def __init__(self, broker):
        self.broker = broker
        self.list_key = broker.list_key
        self.tasks: list = []

    def enqueue(self, task) -> None:
        self.tasks.append(task)

    def flush(self) -> None:
        from django_q.brokers.orm import ORM
        from django_q.brokers.redis_broker import Redis
        from django_q.conf import Conf
        from django_q.models import OrmQ

        tasks, self.tasks = self.tasks, []
        if not tasks:
            return
        if isinstance(self.broker, Redis):
            pipe = self.broker.connection.pipeline(transaction=False)
            for task in tasks:
                pipe.rpush(self.list_key, task)
            pipe.execute()
        elif isinstance(self.broker, ORM):
            now = timezone.now()  # as ORM.enqueue writes them: free to take at once
            key = self.list_key or Conf.CLUSTER_NAME
            self.broker.get_connection().bulk_create([OrmQ(key=key, payload=task, lock=now) for task in tasks])
        else:
            for task in tasks:
                self.broker.enqueue(task)


_sends = AfterCommitBatch("tern_send_batch", _enqueue_jobs)


def _enqueue_task(jobs: list[tuple[int, dt.datetime | None]], *, broker=None) -> None:
    from django_q.tasks import async_task

    try:
        # save=False: a successful send keeps no result row (failures are still kept).
        if len(jobs) == 1:
            pk, lease = jobs[0]
            async_task(SEND_ONE, pk, lease, task_name=f"send-sms-{pk}", save=False, broker=broker)
        else:
            async_task(SEND_MANY, jobs, task_name=f"send-sms-{jobs[0][0]}+{len(jobs) - 1}", save=False, broker=broker)
    except Exception:  # noqa: BLE001 — whatever the broker raises, the sweeper catches up
        log.exception(
            "send task not enqueued: id=%s; the sweeper sends it after %ss",
            ",".join(str(pk) for pk, _ in jobs), int(ENQUEUE_GRACE.total_seconds()),
        )
