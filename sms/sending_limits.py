"""A portal number's sending limits, as the send tasks take them (sms.tasks): per second and per
day, fixed windows in `sms.ratelimit` shared by every worker. `wait_for(message)` takes one
message's share (sleeping up to a second for the next window); `SendingAllowance` counts a send
task's next shares through a number together."""
from __future__ import annotations

import time
from collections import Counter

from django.utils import timezone

from sms import ratelimit
from sms.models import OutboundMessage

SHORT_WAIT_SECONDS = 1.0
DAY_SECONDS = 86_400


def wait_for(message: OutboundMessage) -> float:
    """0 when the number may send now (and the send is counted), else seconds to wait. A wait
    for the next one-second window is slept here, so a burst of replies is not parked for the
    sweeper; longer waits are left to it."""
    number = message.portal_number
    if number is None:
        return 0.0
    wait = ratelimit.take(per_second_key(number), limit=number.messages_per_second, period=1)
    if 0 < wait <= SHORT_WAIT_SECONDS:
        time.sleep(wait)
        wait = ratelimit.take(per_second_key(number), limit=number.messages_per_second, period=1)
    if not wait and number.messages_per_day:
        wait = ratelimit.take(f"num:{number.pk}:d", limit=number.messages_per_day, period=DAY_SECONDS)
    return wait


def per_second_key(number) -> str:
    return f"num:{number.pk}:s"


class SendingAllowance:
    """A send task's shares of its numbers' per-second sending limits, counted several at once:
    one statement (or one Redis trip) where each message took its own. The task's first message
    through a number takes its own share (`wait_for`) and sets the pace; then it counts
    ahead as many of the number's messages left in the task as that pace sends before the
    current one-second window ends: all of them with a provider that answers at once, a few with
    Twilio's. A share is used only inside its window, so no window sends more than the limit, and
    few are left unused to hold other workers back. A number with a daily limit is not counted
    ahead (an unused share there would be lost for the day): each message takes its own."""

    def __init__(self, messages: list[OutboundMessage]):
        self.unsent = Counter(m.portal_number_id for m in messages if m.portal_number_id)
        self.left: dict[int, tuple[int, float]] = {}  # number id -> (shares, end of their window)
        self.started: float | None = None  # when the task's first message took its share
        self.handled = 0  # messages that took theirs since, that one included

    def use(self, number) -> bool:
        """Whether one more message through `number` may go now on a share counted ahead."""
        if number is None or number.messages_per_day:
            return False
        now = timezone.now().timestamp()
        self.unsent[number.pk] -= 1  # this one
        try:
            shares, window_end = self.left.get(number.pk, (0, 0.0))
            if not (shares and now < window_end):
                wanted = min(self._fits(now), 1 + self.unsent[number.pk])
                if wanted < 2:  # this one alone: it takes its own share
                    return False
                shares, window_end = ratelimit.take_up_to(
                    per_second_key(number), wanted, limit=number.messages_per_second, period=1
                )
                if not shares:
                    return False
            self.left[number.pk] = (shares - 1, window_end)
            return True
        finally:
            if self.started is None:
                self.started = now
            self.handled += 1

    def pass_over(self, number) -> None:
        """A message through `number` that will not go in this task (held back behind an earlier
        one to its recipient): no share is counted ahead for it."""
        if number is not None:
            self.unsent[number.pk] -= 1

    def _fits(self, now: float) -> int:
        """How many sends, this one included, the task's pace so far fits before the current
        window ends (the limiter's one-second windows start on whole seconds)."""
        if self.started is None:
            return 1
        if now <= self.started:  # nothing measurable yet: as fast as it gets
            return 1 + sum(self.unsent.values())
        pace = (now - self.started) / self.handled
        return int((int(now) + 1 - now) / pace)
