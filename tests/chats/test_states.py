"""chats.states: the one transition table of a chat's status (DESIGN rule 2), tested move by move.

Every pair of statuses is tried through `transition` (one chat) and `transition_many` (a batch):
an allowed move sets the status and its time stamp, counts a new version, records a ChatEvent
and announces the chat after commit; a refused one raises TransitionNotAllowed and changes
nothing, not the row, not the events, not the browser."""
import itertools

import pytest
from django.db import transaction

from chats.models import Chat, ChatEvent, ChatStatus
from chats.states import ALLOWED, STAMPS, TransitionNotAllowed, transition, transition_many
from tests.factories import make_number, make_queue
from tests.layers import GroupListener, fresh_channel_layer

pytestmark = pytest.mark.django_db

MOVES = [
    (ChatStatus.SELECTING, ChatStatus.QUEUED),
    (ChatStatus.SELECTING, ChatStatus.ASSIGNED),
    (ChatStatus.SELECTING, ChatStatus.FINISHED),
    (ChatStatus.QUEUED, ChatStatus.ASSIGNED),
    (ChatStatus.QUEUED, ChatStatus.FINISHED),
    (ChatStatus.ASSIGNED, ChatStatus.QUEUED),
    (ChatStatus.ASSIGNED, ChatStatus.DISMISSED),
    (ChatStatus.ASSIGNED, ChatStatus.FINISHED),
    (ChatStatus.DISMISSED, ChatStatus.QUEUED),
    (ChatStatus.DISMISSED, ChatStatus.FINISHED),
]
REFUSED = [pair for pair in itertools.product(ChatStatus.values, repeat=2) if pair not in MOVES]


@pytest.fixture
def place(db):
    return make_queue("Billing"), make_number("+15550100001")


def make_chat(place, status: str, consumer: str = "+12125550123") -> Chat:
    queue, number = place
    return Chat.objects.create(consumer_number=consumer, portal_number=number, queue=queue, status=status)


def test_the_table_is_the_documented_one():
    """SPEC S8's lifecycle: finished is final; dismissed comes back only through the queue."""
    assert sorted((a, b) for a, targets in ALLOWED.items() for b in targets) == sorted(MOVES)


@pytest.mark.parametrize("old, new", MOVES)
def test_an_allowed_move_stamps_counts_records_and_announces(old, new, place, settings, django_capture_on_commit_callbacks):
    chat = make_chat(place, old)
    listener = GroupListener(fresh_channel_layer(settings), [f"chat.{chat.pk}"])

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        transition(chat, new, by="test")

    chat.refresh_from_db()
    assert chat.status == new and chat.version == 1
    if new in STAMPS:
        assert getattr(chat, STAMPS[new]) is not None
    event = ChatEvent.objects.get(chat=chat)
    assert (event.kind, event.by, event.data) == (f"status.{new}", "test", {"from": old})
    (told,) = listener.heard()[f"chat.{chat.pk}"]
    assert told["chat"]["status"] == new and told["previous_status"] == old and told["chat"]["version"] == 1


@pytest.mark.parametrize("old, new", REFUSED)
def test_a_refused_move_raises_and_changes_nothing(old, new, place, settings, django_capture_on_commit_callbacks):
    chat = make_chat(place, old)
    listener = GroupListener(fresh_channel_layer(settings), [f"chat.{chat.pk}"])

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        with pytest.raises(TransitionNotAllowed, match=f"from {old} to {new}"):
            transition(chat, new)

    chat.refresh_from_db()
    assert chat.status == old and chat.version == 0
    assert not ChatEvent.objects.filter(chat=chat).exists()
    assert listener.heard()[f"chat.{chat.pk}"] == []


@pytest.mark.parametrize("old, new", MOVES)
def test_a_batch_moves_like_one_chat_at_a_time(old, new, place, django_capture_on_commit_callbacks):
    chats = [make_chat(place, old, consumer=f"+1212555{n:04d}") for n in range(3)]

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        transition_many(chats, new, by="test", data={chat.pk: {"n": i} for i, chat in enumerate(chats)})

    for i, chat in enumerate(chats):
        chat.refresh_from_db()
        assert chat.status == new and chat.version == 1
        event = ChatEvent.objects.get(chat=chat)
        assert (event.kind, event.data) == (f"status.{new}", {"from": old, "n": i})


def test_a_batch_with_one_chat_that_may_not_move_moves_none(place):
    movable = make_chat(place, ChatStatus.QUEUED, consumer="+12125550001")
    final = make_chat(place, ChatStatus.FINISHED, consumer="+12125550002")

    with transaction.atomic(), pytest.raises(TransitionNotAllowed):
        transition_many([movable, final], ChatStatus.FINISHED)

    movable.refresh_from_db()
    assert movable.status == ChatStatus.QUEUED and movable.version == 0
    assert not ChatEvent.objects.exists()


# --- a call's status (chats.calls.lifecycle.CALL_MOVES) --------------------------------------------

CALL_MOVES = [("queued", "assigned"), ("queued", "abandoned"), ("queued", "deflected"), ("assigned", "ended")]


@pytest.mark.parametrize("old, new", list(itertools.product(["queued", "assigned", "abandoned", "ended", "deflected"], repeat=2)))
def test_a_call_moves_only_by_its_table(old, new):
    from chats.calls.lifecycle import CALL_MOVES as TABLE, move_call
    from chats.models import Call
    from chats.errors import ChatActionError

    assert sorted((a, b) for a, targets in TABLE.items() for b in targets) == sorted(CALL_MOVES)
    call = Call(call_sid="CA1", caller_number="+12125550123", status=old)
    if (old, new) in CALL_MOVES:
        move_call(call, new)
        assert call.status == new
    else:
        with pytest.raises(ChatActionError, match=f"is {old}; it cannot be {new}"):
            move_call(call, new)
        assert call.status == old
