"""A loopback fake of Twilio's REST API (DESIGN rule 6), standard library only.

It answers the routes the official twilio SDK 9.x calls for what Tern does:

    GET  /2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json   (PhoneNumber, FriendlyName, PageSize, Page)
    GET  /2010-04-01/Accounts/{sid}/SMS/ShortCodes.json         (ShortCode, FriendlyName, PageSize, Page)
    POST /2010-04-01/Accounts/{sid}/Messages.json               (To, From | MessagingServiceSid, Body, MediaUrl…)
    GET  /2010-04-01/Accounts/{sid}/Messages.json               (To, From, PageSize, Page: newest first)
    GET  /2010-04-01/Accounts/{sid}/Messages/{MM}/Media/{ME}    307 to the media storage

Every API request needs HTTP Basic auth with account_sid:auth_token (else 401, code 20003).
Media storage lives on a second loopback origin (another port), as Twilio's lives on another
host: it needs no auth and, like S3, refuses a request that still carries an Authorization
header. Errors use Twilio's JSON body: {"code", "message", "more_info", "status"}.

    fake = FakeTwilio()
    fake.start()
    fake.add_number("+15551230001", sms=True)
    fake.queue_failure(429)            # the next request to Messages.json answers 429
    fake.queue_failure(500, resource="IncomingPhoneNumbers.json")
    ...
    fake.stop()
"""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections import deque
from dataclasses import dataclass
from email.utils import format_datetime
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

API_VERSION = "2010-04-01"

# Twilio's own codes and wording for the errors the fake can give.
DEFAULT_ERRORS = {
    400: (21211, "The 'To' number is not a valid phone number."),
    401: (20003, "Authenticate"),
    403: (20403, "Forbidden"),
    404: (20404, "The requested resource was not found"),
    429: (20429, "Too Many Requests"),
    500: (20500, "Internal Server Error"),
    503: (20503, "Service Unavailable"),
}


@dataclass
class RecordedRequest:
    """One request the fake received. `query` and `form` keep every value of a repeated key."""

    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    headers: dict[str, str]
    client_port: int = 0  # the sender's end of the connection (which process sent it: see test_serve)

    def param(self, name: str, default: str | None = None) -> str | None:
        """The first value of `name` in the form body, else in the query string."""
        values = self.form.get(name) or self.query.get(name)
        return values[0] if values else default


@dataclass
class QueuedFailure:
    status: int
    code: int | None
    message: str


@dataclass
class StoredMedia:
    content: bytes
    content_type: str


def _sid(prefix: str, seed: str | None = None) -> str:
    """A Twilio-shaped SID: two letters and 32 hex digits (stable when seeded)."""
    if seed is None:
        return prefix + secrets.token_hex(16)
    return prefix + hashlib.md5(seed.encode()).hexdigest()


def _rfc2822(moment: datetime) -> str:
    return format_datetime(moment.astimezone(timezone.utc))


def _segments(body: str) -> int:
    if not body:
        return 1
    gsm = all(ord(ch) < 128 for ch in body)
    single, multi = (160, 153) if gsm else (70, 67)
    return 1 if len(body) <= single else -(-len(body) // multi)


def twilio_error_body(status: int, code: int | None = None, message: str | None = None) -> dict:
    default_code, default_message = DEFAULT_ERRORS.get(status, (status, HTTPStatus(status).phrase))
    code = default_code if code is None else code
    return {
        "code": code,
        "message": message or default_message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class FakeTwilio:
    def __init__(self, *, account_sid: str | None = None, auth_token: str | None = None):
        self.account_sid = account_sid or _sid("AC")
        self.auth_token = auth_token or secrets.token_hex(16)
        self.owned_numbers: list[dict] = []
        self.short_codes: list[dict] = []
        self.requests: list[RecordedRequest] = []
        self.sent_messages: list[dict] = []
        self.message_resources: list[dict] = []  # what GET Messages.json lists, oldest first
        # Real Twilio refuses a From it does not know (21606); off unless a test asks for it.
        self.require_owned_from = False
        self._failures: dict[str, deque[QueuedFailure]] = {}  # resource -> failures, in order
        self._media: dict[str, StoredMedia] = {}  # storage name -> bytes
        self._media_names: dict[str, str] = {}  # ME sid -> storage name
        self._lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []
        self._threads: list[threading.Thread] = []
        self.base_url = ""
        self.media_base_url = ""

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeTwilio:
        api = self._serve()
        storage = self._serve()
        self.base_url = f"http://127.0.0.1:{api.server_address[1]}"
        self.media_base_url = f"http://127.0.0.1:{storage.server_address[1]}"
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def use_in(self, settings) -> FakeTwilio:
        """Point the SDK at this fake: SMS_PROVIDER=twilio with its credentials and API base."""
        settings.SMS_PROVIDER = "twilio"
        settings.TWILIO_ACCOUNT_SID = self.account_sid
        settings.TWILIO_AUTH_TOKEN = self.auth_token
        settings.TWILIO_API_BASE = self.base_url
        return self

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _serve(self) -> ThreadingHTTPServer:
        fake = self

        class Handler(_Handler):
            twilio = fake

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-twilio", daemon=True
        )
        thread.start()
        self._servers.append(server)
        self._threads.append(thread)
        return server

    # --- what a test sets up -----------------------------------------------------------------

    def add_number(
        self,
        phone_number: str,
        friendly_name: str = "",
        *,
        sms: bool = True,
        voice: bool = True,
        mms: bool = True,
        fax: bool = False,
    ) -> dict:
        number = {
            "phone_number": phone_number,
            "friendly_name": friendly_name or phone_number,
            "capabilities": {"voice": voice, "sms": sms, "mms": mms, "fax": fax},
        }
        self.owned_numbers.append(number)
        return number

    def add_short_code(self, short_code: str, friendly_name: str = "") -> dict:
        code = {"short_code": short_code, "friendly_name": friendly_name or short_code}
        self.short_codes.append(code)
        return code

    def queue_failure(
        self, status: int, code: int | None = None, message: str | None = None, *, resource: str = "Messages.json"
    ) -> None:
        """The next request to `resource` (Messages.json, IncomingPhoneNumbers.json,
        ShortCodes.json) answers this error; queued failures are used in order."""
        body = twilio_error_body(status, code, message)
        with self._lock:
            self._failures.setdefault(resource, deque()).append(
                QueuedFailure(status=status, code=body["code"], message=body["message"])
            )

    def _next_failure(self, resource: str) -> QueuedFailure | None:
        with self._lock:
            queue = self._failures.get(resource)
            return queue.popleft() if queue else None

    def add_media(self, name: str, content: bytes, content_type: str, *, message_sid: str | None = None) -> str:
        """Store bytes under `name`; returns the Twilio media URL that redirects to them."""
        media_sid = _sid("ME")
        message_sid = message_sid or _sid("MM")
        with self._lock:
            self._media[name] = StoredMedia(content=content, content_type=content_type)
            self._media_names[media_sid] = name
        return f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}/Messages/{message_sid}/Media/{media_sid}"

    # --- what a test reads back --------------------------------------------------------------

    def requests_to(self, path_suffix: str, method: str | None = None) -> list[RecordedRequest]:
        return [
            r for r in list(self.requests)
            if r.path.endswith(path_suffix) and (method is None or r.method == method)
        ]

    # --- resources, as Twilio renders them ---------------------------------------------------

    def _account_uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}"

    def _number_resource(self, number: dict) -> dict:
        sid = number.get("sid") or _sid("PN", number["phone_number"])
        created = _rfc2822(datetime(2024, 1, 15, 12, 0, tzinfo=timezone.utc))
        caps = {"voice": False, "sms": False, "mms": False, "fax": False, **(number.get("capabilities") or {})}
        return {
            "account_sid": self.account_sid,
            "address_requirements": "none",
            "address_sid": None,
            "api_version": API_VERSION,
            "beta": False,
            "bundle_sid": None,
            "capabilities": caps,
            "date_created": created,
            "date_updated": created,
            "emergency_address_sid": None,
            "emergency_address_status": "unregistered",
            "emergency_status": "Inactive",
            "friendly_name": number.get("friendly_name") or number["phone_number"],
            "identity_sid": None,
            "origin": "twilio",
            "phone_number": number["phone_number"],
            "sid": sid,
            "sms_application_sid": "",
            "sms_fallback_method": "POST",
            "sms_fallback_url": "",
            "sms_method": "POST",
            "sms_url": "",
            "status": "in-use",
            "status_callback": "",
            "status_callback_method": "POST",
            "subresource_uris": {
                "assigned_add_ons": f"{self._account_uri()}/IncomingPhoneNumbers/{sid}/AssignedAddOns.json"
            },
            "trunk_sid": None,
            "uri": f"{self._account_uri()}/IncomingPhoneNumbers/{sid}.json",
            "voice_application_sid": None,
            "voice_caller_id_lookup": False,
            "voice_fallback_method": "POST",
            "voice_fallback_url": None,
            "voice_method": "POST",
            "voice_receive_mode": "voice",
            "voice_url": None,
        }

    def _short_code_resource(self, code: dict) -> dict:
        sid = code.get("sid") or _sid("SC", code["short_code"])
        created = _rfc2822(datetime(2024, 1, 15, 12, 0, tzinfo=timezone.utc))
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "date_created": created,
            "date_updated": created,
            "friendly_name": code.get("friendly_name") or code["short_code"],
            "short_code": code["short_code"],
            "sid": sid,
            "sms_fallback_method": "POST",
            "sms_fallback_url": None,
            "sms_method": "POST",
            "sms_url": None,
            "uri": f"{self._account_uri()}/SMS/ShortCodes/{sid}.json",
        }

    def _page(self, key: str, path: str, items: list[dict], query: dict[str, list[str]]) -> dict:
        def first(name, default=None):
            return query.get(name, [default])[0]

        page_size = max(1, min(int(first("PageSize", "50")), 1000))
        page = max(0, int(first("Page", "0")))
        filters = {k: v[0] for k, v in query.items() if k not in {"PageSize", "Page", "PageToken"}}
        start = page * page_size
        chunk = items[start:start + page_size]

        def uri(number: int) -> str:
            return f"{path}?{urlencode({**filters, 'PageSize': page_size, 'Page': number})}"

        has_next = start + page_size < len(items)
        return {
            key: chunk,
            "end": start + len(chunk) - 1 if chunk else start,
            "first_page_uri": uri(0),
            "next_page_uri": (uri(page + 1) + f"&PageToken=PA{_sid('', str(start + page_size))}") if has_next else None,
            "page": page,
            "page_size": page_size,
            "previous_page_uri": uri(page - 1) if page > 0 else None,
            "start": start,
            "uri": uri(page),
        }

    def _message_resource(self, form: dict[str, list[str]]) -> dict:
        def first(name):
            values = form.get(name)
            return values[0] if values else None

        media = form.get("MediaUrl", [])
        sid = _sid("MM" if media else "SM")
        now = _rfc2822(datetime.now(timezone.utc))
        body = first("Body") or ""
        from_ = first("From")
        service = first("MessagingServiceSid")
        uri = f"{self._account_uri()}/Messages/{sid}.json"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": now,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": from_,
            "messaging_service_sid": service,
            "num_media": str(len(media)),
            "num_segments": str(_segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service and not from_ else "queued",
            "subresource_uris": {"media": f"{self._account_uri()}/Messages/{sid}/Media.json"},
            "to": first("To"),
            "uri": uri,
        }

    def _validate_message(self, form: dict[str, list[str]]) -> tuple[int, int, str] | None:
        if not form.get("To"):
            return 400, 21604, "A 'To' phone number is required."
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return 400, 21603, "A 'From' phone number is required."
        if not form.get("Body") and not form.get("MediaUrl") and not form.get("ContentSid"):
            return 400, 21602, "Message body is required."
        if self.require_owned_from and form.get("From"):
            from_ = form["From"][0]
            owned = {n["phone_number"] for n in self.owned_numbers} | {c["short_code"] for c in self.short_codes}
            if from_ not in owned:
                return 400, 21606, (
                    f"The From phone number {from_} is not a valid, SMS-capable inbound phone number "
                    "or short code for your account."
                )
        return None


class _Handler(BaseHTTPRequestHandler):
    twilio: FakeTwilio  # set on the subclass made per server
    server_version = "FakeTwilio/1.0"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    # --- plumbing ----------------------------------------------------------------------------

    def _record(self) -> RecordedRequest:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        is_form = (self.headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded")
        recorded = RecordedRequest(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            form=parse_qs(raw, keep_blank_values=True) if is_form else {},
            headers=dict(self.headers.items()),
            client_port=self.client_address[1],
        )
        with self.twilio._lock:
            self.twilio.requests.append(recorded)
        return recorded

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json; charset=utf-8", headers)

    def _error(self, status: int, code: int | None = None, message: str | None = None) -> None:
        headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if status == 401 else None
        self._json(status, twilio_error_body(status, code, message), headers)

    def _authorized(self, request: RecordedRequest) -> bool:
        header = next((v for k, v in request.headers.items() if k.lower() == "authorization"), "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == self.twilio.account_sid and password == self.twilio.auth_token

    # --- routing -----------------------------------------------------------------------------

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def _dispatch(self) -> None:
        request = self._record()
        segments = [s for s in request.path.split("/") if s]

        if segments[:1] == ["fake-media-storage"]:
            return self._storage(request, "/".join(segments[1:]))
        if not self._authorized(request):
            return self._error(401)
        if segments[:2] != [API_VERSION, "Accounts"] or len(segments) < 4 or segments[2] != self.twilio.account_sid:
            return self._not_found(request)

        resource = segments[3:]
        failure = self.twilio._next_failure(resource[-1])
        if failure is not None:
            return self._error(failure.status, failure.code, failure.message)
        if resource == ["Messages.json"]:
            return self._messages(request)
        if request.method == "GET" and resource == ["IncomingPhoneNumbers.json"]:
            return self._incoming_phone_numbers(request)
        if request.method == "GET" and resource == ["SMS", "ShortCodes.json"]:
            return self._short_codes(request)
        if request.method == "GET" and len(resource) == 4 and resource[0] == "Messages" and resource[2] == "Media":
            return self._media_redirect(request, resource[3].removesuffix(".json"))
        return self._not_found(request)

    def _not_found(self, request: RecordedRequest) -> None:
        self._error(404, 20404, f"The requested resource {request.path} was not found")

    def _messages(self, request: RecordedRequest) -> None:
        fake = self.twilio
        if request.method == "GET":
            to, from_ = request.query.get("To", [None])[0], request.query.get("From", [None])[0]
            items = [
                m for m in reversed(list(fake.message_resources))
                if (to is None or m["to"] == to) and (from_ is None or m["from"] == from_)
            ]
            return self._json(200, fake._page("messages", request.path, items, request.query))
        if request.method != "POST":
            return self._not_found(request)
        problem = fake._validate_message(request.form)
        if problem is not None:
            return self._error(*problem)
        sent = {key: values[0] for key, values in request.form.items()}
        if "MediaUrl" in request.form:
            sent["MediaUrl"] = list(request.form["MediaUrl"])
        resource = fake._message_resource(request.form)
        with fake._lock:
            fake.sent_messages.append(sent)
            fake.message_resources.append(resource)
        self._json(201, resource)

    def _incoming_phone_numbers(self, request: RecordedRequest) -> None:
        fake = self.twilio
        wanted = request.query.get("PhoneNumber", [""])[0].replace("*", "")
        name = request.query.get("FriendlyName", [None])[0]
        items = [
            fake._number_resource(n) for n in list(fake.owned_numbers)
            if wanted in n["phone_number"] and (name is None or n.get("friendly_name") == name)
        ]
        self._json(200, fake._page("incoming_phone_numbers", request.path, items, request.query))

    def _short_codes(self, request: RecordedRequest) -> None:
        fake = self.twilio
        wanted = request.query.get("ShortCode", [None])[0]
        name = request.query.get("FriendlyName", [None])[0]
        items = [
            fake._short_code_resource(c) for c in list(fake.short_codes)
            if (wanted is None or c["short_code"] == wanted) and (name is None or c.get("friendly_name") == name)
        ]
        self._json(200, fake._page("short_codes", request.path, items, request.query))

    def _media_redirect(self, request: RecordedRequest, media_sid: str) -> None:
        name = self.twilio._media_names.get(media_sid)
        if name is None:
            return self._not_found(request)
        location = f"{self.twilio.media_base_url}/fake-media-storage/{name}"
        self._send(307, b"", "text/plain", {"Location": location})

    def _storage(self, request: RecordedRequest, name: str) -> None:
        if any(name.lower() == "authorization" for name in request.headers):
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidArgument</Code>'
                "<Message>Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                "Signature query string parameter or the Authorization header should be specified</Message>"
                "<ArgumentName>Authorization</ArgumentName></Error>"
            )
            return self._send(400, body.encode(), "application/xml")
        media = self.twilio._media.get(name)
        if media is None or request.method != "GET":
            body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code></Error>'
            return self._send(404, body.encode(), "application/xml")
        self._send(200, media.content, media.content_type)
