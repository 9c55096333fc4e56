"""Blended SMS settings and texts: the queue's override, else the in-call SMS settings (SPEC C5,
C7); the prompts a caller hears; whether a caller can be texted."""
from __future__ import annotations

import copy
import logging
from typing import NamedTuple

import phonenumbers

from chats.models import (
    Call,
)
from portal.models import (
    BlendingMessages,
    ChatSettings,
    InCallSmsSettings,
)
from queues.models import Queue, QueueBlendingMessages
from sms.numbers import is_us_number, parse_e164
from sms.pipeline import is_do_not_contact

log = logging.getLogger(__name__)


class WaitTimeRules(NamedTuple):
    enabled: bool
    interval_seconds: int
    play_limit: int | None
    min_wait_seconds: int | None
    max_wait_seconds: int | None


def _override(queue: Queue | None, name: str, in_call: InCallSmsSettings):
    value = getattr(queue, name, None) if queue is not None else None
    return value if value is not None else getattr(in_call, name)


def wait_time_rules(queue: Queue | None, in_call: InCallSmsSettings | None = None) -> WaitTimeRules:
    in_call = in_call or InCallSmsSettings.load()
    return WaitTimeRules(
        enabled=bool(in_call.wait_time_sms_enabled and queue is not None and queue.wait_time_sms_enabled),
        interval_seconds=_override(queue, "announcement_interval_seconds", in_call),
        play_limit=_override(queue, "consent_play_limit", in_call),
        min_wait_seconds=_override(queue, "min_estimated_wait_seconds", in_call),
        max_wait_seconds=_override(queue, "max_estimated_wait_seconds", in_call),
    )


def messages_for(language: str, in_call: InCallSmsSettings | None = None, queue: Queue | None = None) -> BlendingMessages:
    """The prompts and texts in the call's language: each one the queue set in that language
    (seed 001: queue messages override the general ones), else the in-call SMS settings' in that
    language, else in the default language, else in any language set up, else the built-in
    defaults. A queue's consent prompt replaces the general recording too."""
    in_call = in_call or InCallSmsSettings.load()
    rows = {row.language: row for row in in_call.messages.all()}
    general = next((rows[code] for code in (language, ChatSettings.load().default_language) if code in rows), None)
    if general is None:
        general = next(iter(rows.values())) if rows else BlendingMessages(settings=in_call, language=language)
    override = queue.blending_messages.filter(language=language).first() if queue is not None else None
    if override is None:
        return general
    resolved = copy.copy(general)
    for name in QueueBlendingMessages.TEXT_FIELDS:
        if getattr(override, name).strip():
            setattr(resolved, name, getattr(override, name))
    if override.consent_prompt.strip():
        resolved.consent_prompt_audio = None
        resolved.language = language
    return resolved


class Prompt(NamedTuple):
    """Something the caller hears: text read in `language`, or a recording (`audio`)."""

    text: str
    language: str
    audio: bool = False
    kind: str = ""


def consent_prompt(call: Call) -> Prompt:
    messages = messages_for(call.language, queue=call.queue)
    return Prompt(messages.consent_prompt, messages.language, bool(messages.consent_prompt_audio), "consent")


def sms_sent_prompt(call: Call) -> Prompt:
    messages = messages_for(call.language, queue=call.queue)
    return Prompt(messages.sms_sent_prompt, messages.language, False, "sms_sent")


def incorrect_selection_prompt(call: Call) -> Prompt:
    messages = messages_for(call.language, queue=call.queue)
    return Prompt(messages.incorrect_selection_prompt, messages.language, False, "incorrect_selection")


def can_receive_sms(number: str) -> bool:
    """A number written in E.164 that is not a fixed line (anonymous and withheld caller ids,
    short codes and landlines cannot be texted)."""
    parsed = parse_e164(number)
    if parsed is None:
        return False
    return phonenumbers.number_type(parsed) != phonenumbers.PhoneNumberType.FIXED_LINE


def texting_refusal(call: Call, *, non_us_allowed: bool) -> str:
    """Why the caller cannot be texted from the call's SMS number ("" when they can)."""
    if call.sms_number is None:
        return "No in-call SMS number is set up."
    if not can_receive_sms(call.caller_number):
        return "The caller's number cannot receive text messages."
    if not non_us_allowed and not is_us_number(call.caller_number):
        return "Non US phone number service is not enabled"
    if is_do_not_contact(call.caller_number, call.sms_number.number):
        return "The caller opted out of text messages (STOP)."
    return ""
