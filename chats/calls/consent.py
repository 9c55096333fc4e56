"""The wait-time SMS consent (SPEC B1) and the estimated wait it depends on.

- `wait_step()` — the caller is on hold: is this the moment for the consent prompt? (the
  announcement interval since the last prompt, or since the call was queued; the estimated wait
  inside the min/max; plays below the limit; not already allowed or denied; the caller's number
  can be texted). It counts the play; for IVR API calls it also sets `consent_deadline_at`
  (10 s), which the one sweeper turns into `no_response` when no digit arrives.
- `apply_digit()` — 1 allowed (the wait-time SMS goes out through the outbound pipeline),
  2 denied (never asked again), another digit: the incorrect-selection prompt and the consent
  prompt again, no digit: `no_response` (asked again at the next interval).

Estimated wait time (EWT), in seconds, for a queued call:

    EWT = ceil((calls ahead + 1) × AHT ÷ max(available agents, 1))

where *calls ahead* are the queue's calls still queued that were queued before this one, *AHT*
is the average handle time (assigned → ended) of the queue's last 20 answered calls of the last
7 days (300 s when there are none yet), and *available agents* are the queue's agents, directly
or through a team, whose status is available."""
from __future__ import annotations

import datetime as dt
import logging
import math
from typing import NamedTuple

from django.db import transaction
from django.db.models import Avg, DurationField, ExpressionWrapper, F
from django.utils import timezone

from chats import events, transcript
from chats.calls import deflection, lifecycle, rules, sms_side
from chats.models import (
    ChatEventKind,
    Call,
    CallSource,
    CallStatus,
    ChatEvent,
    ChatType,
    WaitTimeSmsStatus,
)
from portal.models import (
    AgentStatus,
    InCallSmsSettings,
)
from queues.models import Queue
from queues.routing import queue_agents
from sms import consent as ledger
from sms.models import ConsentKind, ConsentSource
from sms.pipeline import SendRefused

log = logging.getLogger(__name__)


CONSENT_TIMEOUT_SECONDS = 10


DEFAULT_HANDLE_SECONDS = 300


RECENT_CALLS = 20


RECENT_WINDOW = dt.timedelta(days=7)


HOLD_MIN_SECONDS = 5


HOLD_MAX_SECONDS = 30


def average_handle_seconds(queue: Queue | None, *, now: dt.datetime | None = None) -> float:
    now = now or timezone.now()
    recent = (
        Call.objects.filter(
            queue=queue, status=CallStatus.ENDED, assigned_at__isnull=False, ended_at__gte=now - RECENT_WINDOW
        )
        .order_by("-ended_at")
        .values_list("pk", flat=True)[:RECENT_CALLS]
    )
    average = (
        Call.objects.filter(pk__in=list(recent))
        .annotate(handled=ExpressionWrapper(F("ended_at") - F("assigned_at"), output_field=DurationField()))
        .aggregate(avg=Avg("handled"))["avg"]
    )
    return average.total_seconds() if average else DEFAULT_HANDLE_SECONDS


def estimated_wait_seconds(call: Call, *, now: dt.datetime | None = None) -> int:
    """EWT = ceil((calls ahead + 1) × AHT ÷ max(available agents, 1)); see the module's text."""
    queue = call.queue
    ahead = (
        Call.objects.filter(queue=queue, status=CallStatus.QUEUED, queued_at__lt=call.queued_at)
        .exclude(pk=call.pk)
        .count()
        if call.queued_at
        else 0
    )
    agents = queue_agents(queue).filter(status=AgentStatus.AVAILABLE).count() if queue is not None else 0
    return math.ceil((ahead + 1) * average_handle_seconds(queue, now=now) / max(agents, 1))


def _due_at(call: Call, wait_rules: rules.WaitTimeRules) -> dt.datetime | None:
    reference = call.last_prompt_at or call.queued_at or call.created_at
    return reference + dt.timedelta(seconds=wait_rules.interval_seconds) if reference else None


def consent_refusal(call: Call, *, now: dt.datetime | None = None, in_call: InCallSmsSettings | None = None) -> str:
    """Why the consent prompt is not played now ("" when it is due). The cheap checks come
    first; the estimated wait last."""
    now = now or timezone.now()
    in_call = in_call or InCallSmsSettings.load()
    wait_rules = rules.wait_time_rules(call.queue, in_call)
    if call.status != CallStatus.QUEUED:
        return "The call is not waiting in a queue."
    if not wait_rules.enabled:
        return "Wait-time SMS is off for this queue."
    if call.wait_time_sms_status in (WaitTimeSmsStatus.ALLOWED, WaitTimeSmsStatus.DENIED):
        return f"The caller already answered: {call.wait_time_sms_status}."
    if wait_rules.play_limit is not None and call.prompt_plays >= wait_rules.play_limit:
        return "The consent prompt was played as often as allowed."
    refusal = rules.texting_refusal(call, non_us_allowed=in_call.non_us_wait_time_allowed)
    if refusal:
        return refusal
    if call.consent_deadline_at is not None and call.consent_deadline_at > now:
        return "The caller is being asked right now."
    due = _due_at(call, wait_rules)
    if due is not None and now < due:
        return "Not yet: the announcement interval has not passed."
    if wait_rules.min_wait_seconds is not None or wait_rules.max_wait_seconds is not None:
        wait = estimated_wait_seconds(call, now=now)
        if wait_rules.min_wait_seconds is not None and wait < wait_rules.min_wait_seconds:
            return f"The estimated wait ({wait} s) is below the minimum."
        if wait_rules.max_wait_seconds is not None and wait > wait_rules.max_wait_seconds:
            return f"The estimated wait ({wait} s) is above the maximum."
    return ""


class WaitStep(NamedTuple):
    """What the caller on hold hears next: the consent prompt, or hold for `hold_seconds`."""

    action: str  # "consent" | "deflect" | "hold"
    prompt: rules.Prompt | None
    hold_seconds: int
    reason: str = ""


def wait_step(*, call_sid: str, now: dt.datetime | None = None) -> tuple[Call, WaitStep]:
    """The caller is on hold and the IVR asks what comes next. When the consent prompt is due
    it is counted as played now."""
    now = now or timezone.now()
    with transaction.atomic():
        call = lifecycle.lock_call(call_sid)
        if not deflection.offer_refusal(call, lambda: estimated_wait_seconds(call, now=now)):
            # SPEC B4: "press 3 to continue by text instead", once, before the wait-time SMS.
            events.call_updated(call)
            return call, WaitStep("deflect", deflection.mark_offered(call, now), 0)
        in_call = InCallSmsSettings.load()
        reason = consent_refusal(call, now=now, in_call=in_call)
        if not reason:
            call.prompt_plays += 1
            call.last_prompt_at = now
            fields = ["prompt_plays", "last_prompt_at"]
            if call.source == CallSource.IVR_API:
                call.consent_deadline_at = now + dt.timedelta(seconds=CONSENT_TIMEOUT_SECONDS)
                fields.append("consent_deadline_at")
            call.save(update_fields=fields)
            events.call_updated(call)
            return call, WaitStep("consent", rules.consent_prompt(call), 0)
        due = _due_at(call, rules.wait_time_rules(call.queue, in_call))
        seconds = (due - now).total_seconds() if due is not None and due > now else HOLD_MAX_SECONDS
        hold = int(min(max(seconds, HOLD_MIN_SECONDS), HOLD_MAX_SECONDS))
        return call, WaitStep("hold", None, hold, reason)


class DigitOutcome(NamedTuple):
    outcome: str  # allowed | denied | incorrect | no_response | ignored | deflected
    prompts: list[rules.Prompt]
    ask_again: bool  # the consent prompt follows at once (after an incorrect digit)
    hang_up: bool = False  # deflected: the IVR ends the call after the prompts


def apply_digit(*, call_sid: str, digit: str, now: dt.datetime | None = None) -> tuple[Call, DigitOutcome]:
    """The caller's answer to the consent prompt (SPEC B1). A digit for a call that was not asked,
    or that already answered, changes nothing (`ignored`): a retried webhook sends no second SMS."""
    now = now or timezone.now()
    digit = (digit or "").strip()
    with transaction.atomic():
        call = lifecycle.lock_call(call_sid)
        if digit == deflection.DIGIT and deflection.can_accept(call):
            goodbye = deflection.deflect(call)
            if goodbye is not None:
                events.call_updated(call)
                return call, DigitOutcome("deflected", [goodbye], False, hang_up=True)
        answered = call.wait_time_sms_status in (WaitTimeSmsStatus.ALLOWED, WaitTimeSmsStatus.DENIED)
        if call.status != CallStatus.QUEUED or answered or call.prompt_plays == 0:
            return call, DigitOutcome("ignored", [], False)
        call.consent_deadline_at = None
        if digit == "1":
            call.wait_time_sms_status = WaitTimeSmsStatus.ALLOWED
            call.save(update_fields=["wait_time_sms_status", "consent_deadline_at"])
            _record_answer(call, ConsentKind.WAIT_SMS_ALLOWED, digit)
            _send_wait_time_sms(call)
            result = DigitOutcome("allowed", [rules.sms_sent_prompt(call)], False)
        elif digit == "2":
            call.wait_time_sms_status = WaitTimeSmsStatus.DENIED
            call.save(update_fields=["wait_time_sms_status", "consent_deadline_at"])
            _record_answer(call, ConsentKind.WAIT_SMS_DENIED, digit)
            result = DigitOutcome("denied", [], False)
        elif not digit:
            call.wait_time_sms_status = WaitTimeSmsStatus.NO_RESPONSE
            call.save(update_fields=["wait_time_sms_status", "consent_deadline_at"])
            result = DigitOutcome("no_response", [], False)
        else:
            # Asked again at once; not counted as another play (it is the same offer).
            if call.source == CallSource.IVR_API:
                call.consent_deadline_at = now + dt.timedelta(seconds=CONSENT_TIMEOUT_SECONDS)
            call.save(update_fields=["consent_deadline_at"])
            result = DigitOutcome("incorrect", [rules.incorrect_selection_prompt(call), rules.consent_prompt(call)], True)
        log.info("call %s: digit %r → %s", call_sid, digit, result.outcome)
        events.call_updated(call)
        return call, result


def _record_answer(call: Call, kind: str, digit: str) -> None:
    """The caller's answer in the consent ledger (SPEC R2), beside opt-outs and opt-ins."""
    ledger.record(
        kind=kind,
        consumer_number=call.caller_number,
        portal_number=call.sms_number.number if call.sms_number else "",
        source=ConsentSource.IVR,
        text=f"Pressed {digit} during call {call.call_sid}",
    )


def _send_wait_time_sms(call: Call) -> None:
    chat = sms_side.open_sms_side(call, ChatType.WAIT_TIME_SMS)
    body = rules.messages_for(call.language, queue=call.queue).wait_time_sms_text
    try:
        transcript.send_text(chat=chat, body=body, kind="blending")
    except SendRefused as exc:
        ChatEvent.objects.create(chat=chat, kind=ChatEventKind.WAIT_TIME_SMS_REFUSED, data={"error": exc.message})
        log.warning("call %s: wait-time SMS refused: %s", call.call_sid, exc.message)


def sweep_calls(now: dt.datetime | None = None) -> int:
    """IVR API calls whose consent prompt got no digit in 10 seconds: `no_response`, asked again
    at the next interval. Run by chats.sweepers.run_sweepers."""
    now = now or timezone.now()
    done = 0
    with transaction.atomic():
        due = list(
            Call.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(consent_deadline_at__lte=now)
            .order_by("consent_deadline_at")[:500]
        )
        for call in due:
            call.consent_deadline_at = None
            fields = ["consent_deadline_at"]
            if call.status == CallStatus.QUEUED and call.wait_time_sms_status in (
                WaitTimeSmsStatus.NONE, WaitTimeSmsStatus.NO_RESPONSE
            ):
                call.wait_time_sms_status = WaitTimeSmsStatus.NO_RESPONSE
                fields.append("wait_time_sms_status")
                done += 1
                events.call_updated(call)
            call.save(update_fields=fields)
    return done
