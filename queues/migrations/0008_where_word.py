from django.db import migrations


def add_where(apps, schema_editor):
    MenuCommand = apps.get_model("queues", "MenuCommand")
    Queue = apps.get_model("queues", "Queue")
    taken = any("WHERE" in [w.strip().upper() for w in q.menu_keywords.split(",")] for q in Queue.objects.exclude(menu_keywords=""))
    if not taken:
        MenuCommand.objects.get_or_create(word="WHERE", defaults={"action": "where"})


class Migration(migrations.Migration):
    dependencies = [("queues", "0007_csat_survey")]

    operations = [migrations.RunPython(add_where, migrations.RunPython.noop)]
