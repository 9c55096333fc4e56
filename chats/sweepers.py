"""The periodic work of the whole portal, in one place: pending inbound texts, chat deadlines and
the outbound queue.
Run by `manage.py sweep` (a loop every few seconds, started by `serve`) and, as a safety net,
by a django-q2 schedule every minute. Safe to run twice and from several processes."""
import logging

from chats import erasure, intake, queue_position, timers
from chats.calls import consent
from portal import event_webhooks
from portal.presence import sweep_presence
from sms import sessionless
from sms import tasks as sms_tasks

log = logging.getLogger(__name__)

SCHEDULE_NAME = "tern-sweepers"


def run_sweepers() -> dict:
    return {
        "inbound": intake.sweep(),
        "chats": timers.sweep(),
        "positions": queue_position.send_updates(),
        "calls": consent.sweep_calls(),
        "outbound": sms_tasks.sweep_outbound(),
        "presence": sweep_presence(),
        "sessionless": sessionless.sweep(),
        "webhooks": event_webhooks.sweep_deliveries(),
        "retention": erasure.sweep_retention(),
    }


def register_schedule(**kwargs) -> None:
    """post_migrate: the django-q2 schedule, created or updated by name."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "chats.sweepers.run_sweepers",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )
