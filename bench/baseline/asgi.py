"""The baseline's ASGI app: Django's handler with the request threads kept as Tern keeps them
(portal.http_threads), so the baseline is the machine's limit with the same server machinery as
Tern's webhook, not with a thread started and joined for each request; and its startup objects
frozen out of the garbage collector as Tern's web process freezes its own (portal.gc_freeze)."""
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "baseline.settings")
django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application does

from portal.http_threads import ThreadReusingHandler  # noqa: E402  (needs Django set up first)

application = ThreadReusingHandler()

from portal.gc_freeze import freeze_startup  # noqa: E402

freeze_startup()
