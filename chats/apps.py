from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ChatsConfig(AppConfig):
    name = "chats"
    verbose_name = "Chats"

    def ready(self):
        from chats import event_webhooks  # noqa: F401 — connects the chat webhooks
        from chats.sweepers import register_schedule

        post_migrate.connect(_register_after_chats_migrated, sender=self, dispatch_uid="tern-sweepers")
        self._register = register_schedule


def _register_after_chats_migrated(sender, **kwargs):
    sender._register()
