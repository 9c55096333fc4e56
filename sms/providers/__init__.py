"""get_provider() returns the provider chosen by SMS_PROVIDER (`local` or `twilio`)."""
from django.conf import settings

from sms.providers.base import Provider, ProviderError


def get_provider() -> Provider:
    name = getattr(settings, "SMS_PROVIDER", "local")
    if name == "twilio":
        from sms.providers.twilio import TwilioProvider

        return TwilioProvider()
    if name == "local":
        from sms.providers.local import LocalProvider

        return LocalProvider()
    raise ProviderError(f"Unknown SMS_PROVIDER {name!r}: use 'local' or 'twilio'.")


__all__ = ["Provider", "ProviderError", "get_provider"]
