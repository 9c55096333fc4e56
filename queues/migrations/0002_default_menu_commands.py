from django.db import migrations


def add_defaults(apps, schema_editor):
    MenuCommand = apps.get_model("queues", "MenuCommand")
    for word, action in [("BACK", "back"), ("EXIT", "exit")]:
        MenuCommand.objects.get_or_create(word=word, defaults={"action": action})


class Migration(migrations.Migration):
    dependencies = [("queues", "0001_initial")]

    operations = [migrations.RunPython(add_defaults, migrations.RunPython.noop)]
