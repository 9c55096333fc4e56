"""API credentials (SPEC C9): a key and the hash of its secret."""
import hashlib
import hmac

from django.db import models


class ApiCredentialQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class ApiCredential(models.Model):
    """A key and secret for HTTP Basic access to /apps/api/v1/ (SPEC C9). Only a hash of the
    secret is kept: it is shown once, when created."""

    name = models.CharField(max_length=80, help_text="Who uses it, e.g. 'Billing system'.")
    key = models.CharField(max_length=40, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiCredentialQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = "API credential"

    def __str__(self):
        return f"{self.name} ({self.key})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def check_secret(self, secret: str) -> bool:
        return hmac.compare_digest(self.secret_hash, hash_secret(secret))


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
