"""The one small interface every SMS provider implements (DESIGN rule 6)."""
from __future__ import annotations

import abc
import datetime as dt
from dataclasses import dataclass, field


class ProviderError(Exception):
    """A provider call that failed, with a sentence an admin or agent can act on.

    `retryable` is true for 429, 5xx and network trouble; `code` is the provider's error code
    (Twilio's 21610 for an unsubscribed recipient, for example)."""

    def __init__(self, message: str, *, code: str = "", status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.message = message
        self.code = str(code or "")
        self.status = status
        self.retryable = retryable


@dataclass(frozen=True)
class NumberCheck:
    """What the provider says about one of the portal's numbers."""

    number: str
    owned: bool
    sms_capable: bool
    message: str

    @property
    def verified(self) -> bool:
        return self.owned and self.sms_capable


@dataclass(frozen=True)
class OwnedNumber:
    number: str
    friendly_name: str = ""
    sms_capable: bool = True


@dataclass(frozen=True)
class OutgoingSms:
    to: str
    from_: str
    body: str
    media_urls: list[str] = field(default_factory=list)
    messaging_service_sid: str = ""
    status_callback: str = ""


@dataclass(frozen=True)
class SendResult:
    provider_sid: str
    status: str


@dataclass(frozen=True)
class FetchedMedia:
    content: bytes
    content_type: str


class Provider(abc.ABC):
    name = "base"

    @abc.abstractmethod
    def send(self, message: OutgoingSms) -> SendResult:
        """Hand one SMS/MMS to the provider. Raises ProviderError."""

    def find_sent(self, message: OutgoingSms, since: dt.datetime) -> SendResult | None:
        """The provider's copy of `message` if it made one at or after `since`: an attempt whose
        answer never arrived (the worker died, the connection broke after the request went out).
        None when there is none, or the provider keeps no list to ask. Raises ProviderError when
        the provider cannot be asked."""
        return None

    @abc.abstractmethod
    def check_number(self, e164: str) -> NumberCheck:
        """Does the account own this number with SMS capability? Raises ProviderError when the
        provider cannot be asked (credentials, network)."""

    @abc.abstractmethod
    def list_numbers(self) -> list[OwnedNumber]:
        """The numbers the account owns: the connectivity check. Raises ProviderError."""

    @abc.abstractmethod
    def fetch_media(self, url: str) -> FetchedMedia:
        """Download an inbound MMS item. Raises ProviderError."""

    @abc.abstractmethod
    def validate_webhook(self, *, url: str, params: dict, signature: str) -> bool:
        """Is this callback really from the provider?"""
