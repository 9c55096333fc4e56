"""Checking X-Twilio-Signature against the exact public URL Twilio called (query string included)."""
from django.conf import settings
from django.http import HttpRequest

from sms.providers.twilio import TwilioProvider


def public_url(request: HttpRequest) -> str:
    """The URL as Twilio saw it: PUBLIC_BASE_URL (behind a proxy) + path + query string."""
    if settings.PUBLIC_BASE_URL:
        return settings.PUBLIC_BASE_URL + request.get_full_path()
    return request.build_absolute_uri()


def is_valid_twilio_request(request: HttpRequest) -> bool:
    signature = request.headers.get("X-Twilio-Signature", "")
    # The QueryDict itself: the SDK validator signs every value of a repeated key (getlist).
    return TwilioProvider().validate_webhook(url=public_url(request), params=request.POST, signature=signature)
