"""System texts that depend on the menu tree and the do-not-reply guard."""
import datetime as dt

import time_machine

from queues.models import QueueMessages
from sms.models import NumberDirection, NumberRole, OutboundMessage
from tests.chats.conftest import CONSUMER
from tests.factories import link_number, make_number, make_queue

OUTBOUND = "+15550109999"


def test_the_do_not_reply_message_goes_out_once_a_day_per_sender(phone, support, chat_settings):
    number = make_number(OUTBOUND, direction=NumberDirection.OUTBOUND_ONLY, messages_per_second=100)
    link_number(support.billing, number, role=NumberRole.OUTBOUND)

    with time_machine.travel(dt.datetime(2030, 1, 7, 12, 0, tzinfo=dt.timezone.utc)):
        phone.text("Auto-reply: I am away", to=OUTBOUND)
        phone.text("Auto-reply: I am away", to=OUTBOUND)
        phone.text("Auto-reply: I am away", to=OUTBOUND)
    assert OutboundMessage.objects.filter(to_number=CONSUMER).count() == 1

    with time_machine.travel(dt.datetime(2030, 1, 8, 12, 1, tzinfo=dt.timezone.utc)):
        phone.text("Hello again", to=OUTBOUND)
    assert OutboundMessage.objects.filter(to_number=CONSUMER).count() == 2


def test_a_queue_without_texts_of_its_own_uses_its_parents(phone, support, alice, go_online):
    go_online(alice)
    plain = make_queue("Claims", parent=support.menu, position=3, menu_keywords="CLAIMS")
    plain.agents.add(alice)
    QueueMessages.objects.filter(queue=support.menu).update(queued="Hang on, someone from Support is coming.")

    phone.text("hi")
    phone.new_texts()
    phone.text("claims")

    assert "Hang on, someone from Support is coming." in phone.new_texts()
    assert phone.chat().queue == plain


def test_menu_options_follow_the_queue_pattern(phone, support):
    QueueMessages.objects.filter(queue=support.menu).update(menu_prompt="Responda", menu_option="{number} para {name}")

    phone.text("hola")

    assert "Responda 1 para Billing, 2 para Tech." in phone.new_texts()
