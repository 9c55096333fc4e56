"""Asking the provider about the portal's numbers: the Verify action and Test connection (C4, C11)."""
from dataclasses import dataclass

from django.utils import timezone

from sms.models import PhoneNumber, ProviderConnection, Verification
from sms.providers import ProviderError, get_provider


@dataclass(frozen=True)
class VerifyOutcome:
    number: str
    verified: bool
    message: str


def verify_number(*, number: PhoneNumber) -> VerifyOutcome:
    """Mark the number Verified when the provider says the account owns it with SMS capability.
    A refusal or a provider error leaves it Unverified, with the reason kept on the row."""
    try:
        check = get_provider().check_number(number.number)
    except ProviderError as exc:
        message = exc.message
        verified = False
    else:
        message = check.message
        verified = check.verified
    number.verification = Verification.VERIFIED if verified else Verification.UNVERIFIED
    number.verified_at = timezone.now() if verified else None
    number.verification_note = message[:300]
    number.save(update_fields=["verification", "verified_at", "verification_note"])
    return VerifyOutcome(number=number.number, verified=verified, message=message)


def test_connection() -> ProviderConnection:
    """Run the connectivity check and keep its result on the Twilio connection row."""
    connection = ProviderConnection.load()
    provider = get_provider()
    try:
        numbers = provider.list_numbers()
    except ProviderError as exc:
        connection.ok = False
        connection.message = exc.message
        connection.numbers_found = []
    else:
        connection.ok = True
        connection.message = (
            f"Connected to the {provider.name} provider: {len(numbers)} number(s) found."
        )
        connection.numbers_found = [
            {"number": n.number, "name": n.friendly_name, "sms": n.sms_capable} for n in numbers
        ]
    connection.checked_at = timezone.now()
    connection.save()
    return connection
