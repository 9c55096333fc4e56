"""In-call SMS (SPEC B2) and app links (B3), by the agent on the call."""
from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from chats import events, transcript
from chats.calls import lifecycle, rules, sms_side
from chats.models import (
    ChatEventKind,
    Author,
    Call,
    CallStatus,
    Chat,
    ChatEvent,
    ChatType,
    Message,
)
from chats.errors import ChatActionError
from portal import crm
from portal.models import (
    AgentProfile,
    ChatSettings,
    InCallSmsSettings,
    OperationSettings,
    PresetMessage,
)
from sms.pipeline import SendRefused

log = logging.getLogger(__name__)


APP_LINK_TEXTS = {
    "download": "Download our app here: {url}",
    "launch": "Open our app here: {url}",
}


def _lock_agents_call(agent: AgentProfile, call: Call) -> Call:
    call = lifecycle.lock_call(call.call_sid)
    if call.agent_id != agent.pk or call.status != CallStatus.ASSIGNED:
        raise ChatActionError("You are not on this call.", code="not_held")
    return call


def in_call_refusal(call: Call, in_call: InCallSmsSettings | None = None) -> str:
    in_call = in_call or InCallSmsSettings.load()
    if not (in_call.in_call_sms_enabled and call.queue is not None and call.queue.in_call_sms_enabled):
        return "In-call SMS is not enabled for this queue."
    return rules.texting_refusal(call, non_us_allowed=in_call.non_us_in_call_allowed)


def open_in_call_session(*, agent: AgentProfile, call: Call) -> Call:
    """The agent opens an SMS session with the caller (SPEC B2). The caller's texts, pictures and
    videos then reach the agent live until the call ends."""
    with transaction.atomic():
        call = _lock_agents_call(agent, call)
        refusal = in_call_refusal(call)
        if refusal:
            raise ChatActionError(refusal, code="refused")
        sms_side.open_sms_side(call, ChatType.IN_CALL_SMS)
        if not call.in_call_sms_open:
            call.in_call_sms_open = True
            call.save(update_fields=["in_call_sms_open"])
            ChatEvent.objects.create(chat=call.chat, kind=ChatEventKind.IN_CALL_SMS_OPENED, by=f"agent:{agent.pk}", data={"call_id": call.pk})
            events.call_updated(call)
    return call


def presets_for(call: Call) -> list[PresetMessage]:
    """The preset messages in the call's language (else the default language)."""
    presets = list(PresetMessage.objects.filter(language=call.language))
    if not presets:
        presets = list(PresetMessage.objects.filter(language=ChatSettings.load().default_language))
    return presets


def send_in_call_sms(
    *, agent: AgentProfile, call: Call, preset: PresetMessage | None = None, body: str = ""
) -> Message:
    """A preset message, or a custom one of at most 918 characters when custom messages are
    allowed. Opens the session first if the agent had not yet."""
    in_call = InCallSmsSettings.load()
    if preset is None:
        body = (body or "").strip()
        if not in_call.custom_messages_allowed:
            raise ChatActionError("Only the preset messages can be sent; custom messages are off.", code="custom_off")
        if not body:
            raise ChatActionError("Write a message first.", code="empty")
        if len(body) > in_call.custom_message_limit:
            raise ChatActionError(
                f"The message has {len(body)} characters; the most is {in_call.custom_message_limit}.",
                code="too_long",
            )
    else:
        body = preset.text
    open_in_call_session(agent=agent, call=call)
    with transaction.atomic():
        call = _lock_agents_call(agent, call)
        return _agent_sends(call, agent, body)


def _agent_sends(call: Call, agent: AgentProfile, body: str) -> Message:
    chat = Chat.objects.select_for_update(of=("self",)).select_related("portal_number").get(pk=call.chat_id)
    try:
        message = transcript.send_text(chat=chat, body=body, author=Author.AGENT, agent=agent, kind="blending")
    except SendRefused as exc:
        raise ChatActionError(exc.message, code="send_refused") from exc
    chat.last_agent_message_at = timezone.now()
    chat.save(update_fields=["last_agent_message_at"])
    crm.add_entry(call.crm_record, "call_sms_sent", body, agent_id=agent.pk, chat_id=chat.pk)
    events.call_message(call, message)
    return message


def app_link_url(platform: str, link: str, operation: OperationSettings | None = None) -> str:
    operation = operation or OperationSettings.load()
    return {
        ("ios", "download"): operation.ios_app_store_url,
        ("ios", "launch"): operation.ios_open_url,
        ("android", "download"): operation.google_play_url,
        ("android", "launch"): operation.android_open_url,
    }.get((platform, link), "")


def available_app_links(operation: OperationSettings | None = None) -> list[dict]:
    operation = operation or OperationSettings.load()
    if not operation.app_links_enabled:
        return []
    return [
        {"platform": platform, "link": link}
        for platform in ("ios", "android")
        for link in ("download", "launch")
        if app_link_url(platform, link, operation)
    ]


def send_app_link(*, agent: AgentProfile, call: Call, platform: str, link: str) -> Message:
    """One click: the download or launch link of the company's app for the caller's platform
    (SPEC B3, C8). Needs the app links on, not in-call SMS."""
    operation = OperationSettings.load()
    if not operation.app_links_enabled:
        raise ChatActionError("Sending app links is turned off.", code="disabled")
    if platform not in ("ios", "android") or link not in APP_LINK_TEXTS:
        raise ChatActionError("Pick ios or android, and download or launch.", code="invalid")
    url = app_link_url(platform, link, operation)
    if not url:
        name = "iOS" if platform == "ios" else "Android"
        raise ChatActionError(f"No {name} {link} link is set up in the operation settings.", code="invalid")
    with transaction.atomic():
        call = _lock_agents_call(agent, call)
        refusal = rules.texting_refusal(call, non_us_allowed=InCallSmsSettings.load().non_us_in_call_allowed)
        if refusal:
            raise ChatActionError(refusal, code="refused")
        sms_side.open_sms_side(call, ChatType.IN_CALL_SMS)
        message = _agent_sends(call, agent, APP_LINK_TEXTS[link].format(url=url))
        ChatEvent.objects.create(
            chat_id=call.chat_id, kind=ChatEventKind.APP_LINK_SENT, by=f"agent:{agent.pk}", data={"platform": platform, "link": link}
        )
    return message
