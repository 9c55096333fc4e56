"""The agent's socket and the SMS side of a call (SPEC B1, B2): while the call is the agent's, the
page hears that chat's messages and their delivery statuses (message.created, message.status on
chat.<id>), also after a reconnect; once the call has ended, nothing more of it."""
from __future__ import annotations

import datetime as dt

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from chats.calls import in_call_sms, lifecycle
from chats.models import Call
from portal.models import InCallSmsSettings, PresetMessage
from queues.models import Queue
from sms.models import NumberUsage
from tests.chats.calls import CALLER, IN_CALL, open_agent_socket
from tests.factories import make_agent, make_number
from tests.layers import fresh_channel_layer




async def drain(socket) -> list[dict]:
    received = []
    while not await socket.receive_nothing(timeout=0.5):
        received.append(await socket.receive_json_from(timeout=1))
    return received


@pytest.fixture
def own_channel_layer(settings):
    return fresh_channel_layer(settings)


def _setup() -> dict:
    make_number(IN_CALL, usage=NumberUsage.IN_CALL, messages_per_second=100)
    row = InCallSmsSettings.load()
    row.in_call_sms_enabled = True
    row.wait_time_sms_enabled = True
    row.save()
    queue = Queue.objects.create(name="Billing", wait_time_sms_enabled=True, in_call_sms_enabled=True)
    agent = make_agent("alice", display_name="Alice")
    queue.agents.add(agent)
    preset = PresetMessage.objects.create(language="en", label="Photo", text="Please text us a photo of the item.")
    call = lifecycle.queue_call(call_sid="CAsock", caller_number=CALLER, queue=queue)
    return {"agent": agent, "call": call, "preset": preset}


def _assign(setup):
    Call.objects.filter(pk=setup["call"].pk).update(queued_at=timezone.now() - dt.timedelta(seconds=90))
    return lifecycle.assign_call(call_sid="CAsock", agent=setup["agent"])


def _open_session(setup):
    call = Call.objects.get(pk=setup["call"].pk)
    return in_call_sms.open_in_call_session(agent=setup["agent"], call=call)


def _send_preset(setup):
    call = Call.objects.get(pk=setup["call"].pk)
    return in_call_sms.send_in_call_sms(agent=setup["agent"], call=call, preset=setup["preset"])


def _end(setup):
    lifecycle.end_call(call_sid="CAsock")


def _caller_texts(body: str):
    from chats.intake import receive_sms
    from tests.webhooks import new_sid

    receive_sms(message_sid=new_sid(), from_number=CALLER, to_number=IN_CALL, body=body, media=[])


def statuses_of(received: list[dict], message: dict) -> list[str]:
    return [e["status"] for e in received if e["type"] == "message.status" and e["outbound_id"] == message["outbound_id"]]


@pytest.mark.django_db(transaction=True)
async def test_the_calls_agent_hears_the_in_call_sms_delivery_live(own_channel_layer):
    setup = await database_sync_to_async(_setup)()
    socket = await open_agent_socket("alice")
    try:
        await database_sync_to_async(_assign)(setup)
        await database_sync_to_async(_open_session)(setup)
        opened = await drain(socket)
        message = await database_sync_to_async(_send_preset)(setup)
        received = await drain(socket)
    finally:
        await socket.disconnect()

    updated = [e["call"] for e in opened if e["type"] == "call.updated"]
    assert updated and updated[-1]["sms_chat_id"] == message.chat_id and updated[-1]["in_call_sms_open"]
    created = [e["message"] for e in received if e["type"] == "message.created"]
    assert [m["body"] for m in created] == ["Please text us a photo of the item."]
    assert statuses_of(received, {"outbound_id": message.outbound_id})[-1] == "delivered"  # local provider


@pytest.mark.django_db(transaction=True)
async def test_after_a_reconnect_and_until_the_call_ends(own_channel_layer):
    setup = await database_sync_to_async(_setup)()
    await database_sync_to_async(_assign)(setup)
    await database_sync_to_async(_send_preset)(setup)
    # The page (re)connects while the call and its session are on.
    socket = await open_agent_socket("alice")
    try:
        await database_sync_to_async(_caller_texts)("It is the blue one")
        while_on = await drain(socket)
        await database_sync_to_async(_end)(setup)
        at_the_end = await drain(socket)
        await database_sync_to_async(_caller_texts)("Hello?")
        after = await drain(socket)
    finally:
        await socket.disconnect()

    assert [e["message"]["body"] for e in while_on if e["type"] == "message.created"] == ["It is the blue one"]
    assert [e["message"]["body"] for e in while_on if e["type"] == "call.message"] == ["It is the blue one"]
    assert [e["call"]["status"] for e in at_the_end if e["type"] == "call.updated"] == ["ended"]
    assert not [e for e in after if e["type"] in ("message.created", "message.status", "call.message")]
