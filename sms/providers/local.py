"""The embedded default: no outside service; the phone simulator plays the consumer's phone."""
import secrets

from sms.providers.base import FetchedMedia, NumberCheck, OutgoingSms, OwnedNumber, Provider, ProviderError, SendResult


class LocalProvider(Provider):
    """Every number counts as owned, and messages are accepted at once. Delivery to the
    simulator and the status callbacks are produced by the sending task."""

    name = "local"

    def send(self, message: OutgoingSms) -> SendResult:
        return SendResult(provider_sid=f"SMlocal{secrets.token_hex(13)}", status="queued")

    def check_number(self, e164: str) -> NumberCheck:
        return NumberCheck(
            number=e164,
            owned=True,
            sms_capable=True,
            message="The local provider accepts every number (demo mode, nothing leaves this machine).",
        )

    def list_numbers(self) -> list[OwnedNumber]:
        from sms.models import PhoneNumber  # the local "account" owns what the portal lists

        return [OwnedNumber(number=n.number, friendly_name=n.label) for n in PhoneNumber.objects.all()]

    def fetch_media(self, url: str) -> FetchedMedia:
        raise ProviderError("The local provider has no media to fetch.")

    def validate_webhook(self, *, url: str, params: dict, signature: str) -> bool:
        return True
