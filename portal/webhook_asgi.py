"""Twilio's SMS webhooks without the pages' middleware (DESIGN rule 11: the request path stays
short). A provider's POST carries no session, no user and no CSRF token, and its answer needs no
security headers or messages; under ASGI each sync middleware also costs thread hops. So the
paths below are served by a Django handler with an empty middleware chain: the same URLconf and
views, which check the Twilio signature themselves. Everything else goes through the full one."""
from django.core.handlers.exception import convert_exception_to_response

from portal.http_threads import ThreadReusingHandler

# The inbound SMS and the status callback: the webhooks that come in bursts.
LEAN_PATHS = frozenset({"/sms/twilio/inbound/", "/sms/twilio/status/"})


class LeanHandler(ThreadReusingHandler):
    """A Django handler whose middleware chain is the view alone."""

    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        get_response = self._get_response_async if is_async else self._get_response
        self._middleware_chain = convert_exception_to_response(get_response)


def route_webhooks(full_app, lean_app=None):
    """An ASGI app sending the LEAN_PATHS to `lean_app` and every other request to `full_app`."""
    lean_app = lean_app or LeanHandler()

    async def app(scope, receive, send):
        target = lean_app if scope["type"] == "http" and scope.get("path") in LEAN_PATHS else full_app
        await target(scope, receive, send)

    return app
