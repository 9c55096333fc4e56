"""SPEC M's definitions computed from hand-made chats with known times (issue 13, item 2)."""
import datetime as dt

import pytest

from chats.models import Chat, ChatStatus, ChatType, Message, StartType
from portal.monitoring import metrics
from tests.factories import make_number, make_queue

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2030, 3, 4, 23, 59, 0, tzinfo=dt.timezone.utc)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.fixture
def billing():
    return make_queue("Billing", service_level_seconds=60, short_abandon_seconds=10)


@pytest.fixture
def number():
    return make_number()


_consumers = iter(range(15557000000, 15558000000))


def chat(queue, number, *, queued=None, assigned=None, ended=None, status=None, **kw) -> Chat:
    status = status or (ChatStatus.FINISHED if ended is not None else ChatStatus.ASSIGNED if assigned is not None else ChatStatus.QUEUED)
    return Chat.objects.create(
        consumer_number=f"+{next(_consumers)}", portal_number=number, queue=queue, status=status,
        queued_at=queued if queued is None else at(queued),
        assigned_at=assigned if assigned is None else at(assigned),
        ends_at=ended if ended is None else at(ended),
        **kw,
    )


def test_a_queue_s_figures_count_short_abandons_in_no_rate(billing, number):
    chat(billing, number, queued=0, assigned=30, ended=400)  # within the 60 s target
    chat(billing, number, queued=0, assigned=120)  # spans midnight, still in progress
    chat(billing, number, queued=0, ended=5)  # a short abandon
    chat(billing, number, queued=0, ended=300)  # expired unanswered
    chat(billing, number, queued=50)  # still waiting: offered, in no rate
    chat(billing, number, assigned=0, start_type=StartType.OUTBOUND, chat_type=ChatType.OUTBOUND_SMS)  # never queued

    [row] = metrics.queue_figures(Chat.objects.all())

    assert row["queue_id"] == billing.pk
    assert (row["offered"], row["assigned"], row["abandoned"], row["short_abandoned"], row["within_target"]) == (5, 2, 2, 1, 1)
    # (assigned 2 + abandoned 2 − short 1) = 3 counted: 1 within target, 1 long abandon.
    assert row["service_level"] == 33.3 and row["abandon_rate"] == 33.3
    assert row["average_wait_seconds"] == round((30 + 120 + 5 + 300) / 4, 1)
    assert row["longest_wait_seconds"] == 300


def test_the_queue_s_own_target_and_short_abandon_seconds_are_used(number):
    strict = make_queue("Strict", service_level_seconds=20, short_abandon_seconds=3)
    chat(strict, number, queued=0, assigned=30)  # outside a 20 s target
    chat(strict, number, queued=0, ended=5)  # not short under 3 s: a real abandon

    [row] = metrics.queue_figures(Chat.objects.all())

    assert (row["within_target"], row["short_abandoned"]) == (0, 0)
    assert row["service_level"] == 0.0 and row["abandon_rate"] == 50.0


def test_nothing_counted_yet_gives_no_rate_rather_than_zero(billing, number):
    chat(billing, number, queued=0)
    [row] = metrics.queue_figures(Chat.objects.all())
    assert row["service_level"] is None and row["abandon_rate"] is None


def test_handle_time_and_first_response_per_chat(billing, number):
    handled = chat(billing, number, queued=0, assigned=10, ended=610)
    Message.objects.create(chat=handled, author="agent", body="earlier, before this assignment")
    Message.objects.filter(chat=handled).update(created_at=at(5))
    reply = Message.objects.create(chat=handled, author="agent", body="Hi, I'm Alice")
    Message.objects.filter(pk=reply.pk).update(created_at=at(55))

    row = Chat.objects.annotate(handle=metrics.HANDLE, first_response=metrics.FIRST_RESPONSE).get(pk=handled.pk)

    assert row.handle == pytest.approx(600, abs=0.01)
    assert row.first_response == pytest.approx(45, abs=0.01)
