import datetime as dt

from django.db import migrations

# SPEC R1: the states stricter than the federal 08:00–21:00.
RULES = [
    *[(state, "all", (8, 0), (20, 0), "State telemarketing law: 8 a.m.–8 p.m.") for state in ("FL", "OK", "MD", "MS", "NJ")],
    ("CT", "all", (9, 0), (20, 0), "Connecticut: 9 a.m.–8 p.m."),
    ("RI", "mon_fri", (9, 0), (18, 0), "Rhode Island: weekdays 9 a.m.–6 p.m."),
    ("RI", "sat_sun", (10, 0), (17, 0), "Rhode Island: weekends 10 a.m.–5 p.m."),
    ("TX", "mon_sat", (9, 0), (21, 0), "Texas: Monday–Saturday 9 a.m.–9 p.m."),
    ("TX", "sun", (12, 0), (21, 0), "Texas: Sunday noon–9 p.m."),
]


def seed(apps, schema_editor):
    Rule = apps.get_model("sms", "QuietHoursRule")
    for state, days, start, end, note in RULES:
        Rule.objects.get_or_create(state=state, days=days, defaults={"start": dt.time(*start), "end": dt.time(*end), "note": note})


class Migration(migrations.Migration):
    dependencies = [("sms", "0011_quiet_hours_by_zone_and_state")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
