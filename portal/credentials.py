"""API credentials: creation, revocation and the check behind HTTP Basic (SPEC C9)."""
import secrets

from django.utils import timezone

from portal.models import ApiCredential, hash_secret

# Do not write last_used_at on every request: once a minute is enough to answer "is it in use?".
LAST_USED_RESOLUTION_SECONDS = 60


def create_api_credential(*, name: str, credential: ApiCredential | None = None) -> tuple[ApiCredential, str]:
    """Save a new credential (or the unsaved one given, as the admin form builds it) with a
    fresh key and secret; returns it with the plain secret, which is never stored."""
    secret = secrets.token_urlsafe(32)
    credential = credential or ApiCredential()
    credential.name = name.strip()
    credential.key = f"tk_{secrets.token_hex(12)}"
    credential.secret_hash = hash_secret(secret)
    credential.save()
    return credential, secret


def revoke_api_credential(*, credential: ApiCredential) -> None:
    if credential.revoked_at is None:
        credential.revoked_at = timezone.now()
        credential.save(update_fields=["revoked_at"])


def authenticate_api_credential(*, key: str, secret: str) -> ApiCredential | None:
    """The active credential matching key and secret, its last use recorded; else None."""
    credential = ApiCredential.objects.active().filter(key=key).first()
    if credential is None or not credential.check_secret(secret):
        return None
    now = timezone.now()
    last = credential.last_used_at
    if last is None or (now - last).total_seconds() >= LAST_USED_RESOLUTION_SECONDS:
        ApiCredential.objects.filter(pk=credential.pk).update(last_used_at=now)
        credential.last_used_at = now
    return credential
