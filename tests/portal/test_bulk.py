"""portal.bulk.update_each: many rows, each its own values, in one UPDATE — the values a save would
write, on SQLite and PostgreSQL alike (NULLs, times, numbers, texts), and nothing else touched."""
import datetime as dt

import pytest
from django.utils import timezone

from portal.bulk import update_each
from sms.models import OutboundMessage

pytestmark = pytest.mark.django_db


def test_each_row_gets_its_own_values_and_the_shared_ones_in_one_statement(django_assert_num_queries):
    def text(to, body):
        return OutboundMessage.objects.create(to_number=to, from_number="+15550100001", body=body)

    rows = [text(f"+1555765000{n}", f"Hi {n}") for n in range(3)]
    other = text("+15557650009", "Untouched")
    now = timezone.now().replace(microsecond=0)
    rows[0].next_attempt_at, rows[0].segments, rows[0].provider_sid = now, 3, "SM0"
    rows[1].next_attempt_at, rows[1].segments, rows[1].provider_sid = None, 1, "SM1 'quoted'"
    rows[2].next_attempt_at, rows[2].segments, rows[2].provider_sid = now + dt.timedelta(hours=2), 7, None

    with django_assert_num_queries(1):
        assert update_each(OutboundMessage, rows, ["next_attempt_at", "segments", "provider_sid"], error_code="E1") == 3

    saved = {m.pk: m for m in OutboundMessage.objects.all()}
    assert [(saved[r.pk].next_attempt_at, saved[r.pk].segments, saved[r.pk].provider_sid, saved[r.pk].error_code)
            for r in rows] == [
        (now, 3, "SM0", "E1"), (None, 1, "SM1 'quoted'", "E1"), (now + dt.timedelta(hours=2), 7, None, "E1")
    ]
    untouched = saved[other.pk]
    assert (untouched.body, untouched.error_code, untouched.segments) == ("Untouched", "", other.segments)


def test_no_rows_is_no_statement(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert update_each(OutboundMessage, [], ["segments"]) == 0


def test_an_expression_is_refused_before_anything_is_written():
    from django.db.models import F

    row = OutboundMessage.objects.create(to_number="+15557650001", from_number="+15550100001", body="Hi")
    row.segments = F("segments") + 1

    with pytest.raises(TypeError, match="plain values"):
        update_each(OutboundMessage, [row], ["segments"])
    assert OutboundMessage.objects.get(pk=row.pk).segments == 1
