"""Twilio through the official SDK. TWILIO_API_BASE points it elsewhere (tests use a loopback fake)."""
from __future__ import annotations

import datetime as dt
import json
import logging
import re

import requests
from django.conf import settings
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from sms.numbers import is_short_code
from sms.providers.base import (
    FetchedMedia,
    NumberCheck,
    OutgoingSms,
    OwnedNumber,
    Provider,
    ProviderError,
    SendResult,
)

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 15
UNSUBSCRIBED_RECIPIENT = "21610"
# Looking for the copy of a message whose send answer was lost: the newest messages to the
# number are enough (the attempt was seconds or minutes ago), and Twilio's clock may differ.
LOOKUP_LIMIT = 50
LOOKUP_CLOCK_SKEW = dt.timedelta(minutes=2)
# The SDK puts its own words before Twilio's ("Unable to create record: Attempt to send to…").
_SDK_PREFIX = re.compile(r"^Unable to \w+ (record|page): ")


def _error_from_status(status: int, code, detail: str) -> ProviderError:
    if status == 401:
        return ProviderError(
            "Twilio refused the credentials: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN.",
            code=str(code or ""),
            status=status,
        )
    retryable = status == 429 or status >= 500
    detail = _SDK_PREFIX.sub("", detail or "") or "no details"
    code = str(code or "")
    label = f"Twilio error {code}" if code else f"Twilio answered HTTP {status}"
    return ProviderError(f"{label}: {detail}", code=code, status=status, retryable=retryable)


def _error_from_rest(exc: TwilioRestException) -> ProviderError:
    return _error_from_status(exc.status, exc.code, exc.msg)


def _error_from_page(exc: TwilioException) -> ProviderError | None:
    """The SDK's list() raises a bare TwilioException("Unable to fetch page", response) for any
    page answered with a status other than 200 (a 401 for wrong credentials, a 429, a 500):
    read Twilio's answer from the response it carries. None when there is no response."""
    response = exc.args[1] if len(exc.args) > 1 else None
    if not isinstance(response, Response):
        return None
    try:
        payload = json.loads(response.text or "")
    except ValueError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    return _error_from_status(
        response.status_code, payload.get("code"), str(payload.get("message") or payload.get("detail") or "")
    )


class TwilioProvider(Provider):
    name = "twilio"

    def __init__(self, *, account_sid: str | None = None, auth_token: str | None = None, api_base: str | None = None):
        self.account_sid = account_sid if account_sid is not None else settings.TWILIO_ACCOUNT_SID
        self.auth_token = auth_token if auth_token is not None else settings.TWILIO_AUTH_TOKEN
        self.api_base = api_base if api_base is not None else settings.TWILIO_API_BASE

    def _client(self) -> Client:
        if not self.account_sid or not self.auth_token:
            raise ProviderError(
                "Twilio is not configured: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN in the environment."
            )
        client = Client(
            self.account_sid,
            self.auth_token,
            http_client=TwilioHttpClient(timeout=REQUEST_TIMEOUT_SECONDS),
        )
        if self.api_base:
            client.api.base_url = self.api_base
        return client

    def _call(self, what: str, fn):
        try:
            return fn()
        except TwilioRestException as exc:
            error = _error_from_rest(exc)
            log.warning("twilio %s failed: status=%s code=%s %s", what, exc.status, exc.code, exc.msg)
            raise error from exc
        except TwilioServiceException as exc:  # Twilio's newer RFC 9457 error bodies
            log.warning("twilio %s failed: status=%s code=%s %s", what, exc.status, exc.code, exc.title)
            raise _error_from_status(exc.status, exc.code, exc.detail or exc.title) from exc
        except TwilioException as exc:
            error = _error_from_page(exc)
            if error is not None:
                log.warning("twilio %s failed: status=%s code=%s %s", what, error.status, error.code, error.message)
                raise error from exc
            log.warning("twilio %s failed: %s", what, exc)
            raise ProviderError(
                f"Could not reach Twilio ({exc.__class__.__name__}); try again in a moment.",
                retryable=True,
            ) from exc
        except (requests.RequestException, OSError) as exc:
            log.warning("twilio %s failed: %s", what, exc)
            raise ProviderError(
                f"Could not reach Twilio ({exc.__class__.__name__}); try again in a moment.",
                retryable=True,
            ) from exc

    def check_number(self, e164: str) -> NumberCheck:
        client = self._client()
        if is_short_code(e164):
            found = self._call("short code lookup", lambda: client.short_codes.list(short_code=e164, limit=5))
            owned = any(item.short_code == e164 for item in found)
            return NumberCheck(
                number=e164,
                owned=owned,
                sms_capable=owned,
                message="Twilio lists this short code on the account." if owned
                else "This Twilio account does not own this short code.",
            )
        found = self._call(
            "number lookup", lambda: client.incoming_phone_numbers.list(phone_number=e164, limit=5)
        )
        match = next((item for item in found if item.phone_number == e164), None)
        if match is None:
            return NumberCheck(
                number=e164, owned=False, sms_capable=False,
                message="This Twilio account does not own this number.",
            )
        sms = bool((match.capabilities or {}).get("sms"))
        return NumberCheck(
            number=e164,
            owned=True,
            sms_capable=sms,
            message="Owned by the Twilio account with SMS capability." if sms
            else "The Twilio account owns this number, but it cannot send or receive SMS.",
        )

    def list_numbers(self) -> list[OwnedNumber]:
        client = self._client()
        found = self._call("number list", lambda: client.incoming_phone_numbers.list(limit=200))
        return [
            OwnedNumber(
                number=item.phone_number,
                friendly_name=item.friendly_name or "",
                sms_capable=bool((item.capabilities or {}).get("sms")),
            )
            for item in found
        ]

    def send(self, message: OutgoingSms) -> SendResult:
        client = self._client()
        params: dict = {"to": message.to, "body": message.body}
        if message.messaging_service_sid:
            params["messaging_service_sid"] = message.messaging_service_sid
        else:
            params["from_"] = message.from_
        if message.media_urls:
            params["media_url"] = list(message.media_urls)
        if message.status_callback:
            params["status_callback"] = message.status_callback
        created = self._call("send", lambda: client.messages.create(**params))
        return SendResult(provider_sid=created.sid, status=str(created.status or "queued"))

    def find_sent(self, message: OutgoingSms, since: dt.datetime) -> SendResult | None:
        """Twilio's Messages list, newest first, for the same To (and From, unless a Messaging
        Service sends): the one with the same body made since the attempt. Filtered on
        date_created here, not with DateSent> at Twilio: a message Twilio accepted but has not
        sent yet has no DateSent and would be missed."""
        client = self._client()
        params: dict = {"to": message.to, "limit": LOOKUP_LIMIT}
        if not message.messaging_service_sid:
            params["from_"] = message.from_
        found = self._call("lookup", lambda: client.messages.list(**params))
        earliest = since - LOOKUP_CLOCK_SKEW
        for item in found:
            if not str(item.direction or "").startswith("outbound"):
                continue
            if message.messaging_service_sid and item.messaging_service_sid != message.messaging_service_sid:
                continue
            if (item.body or "") != message.body or int(item.num_media or 0) != len(message.media_urls):
                continue
            if item.date_created is not None and item.date_created < earliest:
                continue
            return SendResult(provider_sid=item.sid, status=str(item.status or "queued"))
        return None

    def fetch_media(self, url: str) -> FetchedMedia:
        # Twilio answers media URLs with a redirect to its storage; requests drops the
        # Authorization header when the redirect leaves the host, as it should.
        def get():
            response = requests.get(
                url, auth=(self.account_sid, self.auth_token), timeout=REQUEST_TIMEOUT_SECONDS, allow_redirects=True
            )
            response.raise_for_status()
            return response

        try:
            response = get()
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            raise ProviderError(
                f"Twilio media download failed with HTTP {status}.",
                status=status,
                retryable=status is not None and (status == 429 or status >= 500),
            ) from exc
        except requests.RequestException as exc:
            raise ProviderError("Could not download the media from Twilio.", retryable=True) from exc
        content_type = response.headers.get("Content-Type", "application/octet-stream").split(";")[0].strip()
        return FetchedMedia(content=response.content, content_type=content_type)

    def validate_webhook(self, *, url: str, params: dict, signature: str) -> bool:
        if not self.auth_token or not signature:
            return False
        return RequestValidator(self.auth_token).validate(url, params, signature)
