from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal settings, agents and teams"

    def ready(self):
        from django_q.signals import post_spawn

        from portal.gc_freeze import on_worker_spawn
        from portal.roles import ensure_supervisors_group

        post_migrate.connect(ensure_supervisors_group, sender=self)
        post_spawn.connect(on_worker_spawn, dispatch_uid="tern-gc-freeze")
