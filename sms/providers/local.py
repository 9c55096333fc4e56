"""The embedded default: no outside service; the phone simulator plays the consumer's phone.

Pictures and videos the simulator sends are kept here as Twilio keeps an MMS's media: stored
under a URL (`/simulator/media/<name>`) that goes in the inbound text's media list, and fetched
by the same task as Twilio's (`chats.tasks.fetch_media` → `fetch_media`)."""
import mimetypes
import re
import secrets

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

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
        name = local_media_name(url)
        if name is None or not default_storage.exists(LOCAL_MEDIA_DIR + name):
            raise ProviderError("The simulator's picture or video is not there any more.")
        with default_storage.open(LOCAL_MEDIA_DIR + name, "rb") as handle:
            content = handle.read()
        return FetchedMedia(content=content, content_type=mimetypes.guess_type(name)[0] or "application/octet-stream")

    def validate_webhook(self, *, url: str, params: dict, signature: str) -> bool:
        return True


LOCAL_MEDIA_URL = "/simulator/media/"
LOCAL_MEDIA_DIR = "simulator/"
LOCAL_MEDIA_NAME = re.compile(r"^[0-9a-f]{32}\.[a-z0-9]{2,5}$")


def store_local_media(content: bytes, content_type: str) -> str:
    """Keep a picture or video the simulator sends; returns its media URL."""
    extension = (mimetypes.guess_extension(content_type) or ".bin").lstrip(".")
    name = f"{secrets.token_hex(16)}.{extension}"
    default_storage.save(LOCAL_MEDIA_DIR + name, ContentFile(content))
    return LOCAL_MEDIA_URL + name


def local_media_name(url: str) -> str | None:
    """The stored file's name in a local media URL, or None for anything else."""
    if not url.startswith(LOCAL_MEDIA_URL):
        return None
    name = url[len(LOCAL_MEDIA_URL):]
    return name if LOCAL_MEDIA_NAME.match(name) else None


def open_local_media(name: str):
    """The stored file (for the simulator's page), or None."""
    if not LOCAL_MEDIA_NAME.match(name) or not default_storage.exists(LOCAL_MEDIA_DIR + name):
        return None
    return default_storage.open(LOCAL_MEDIA_DIR + name, "rb")


def delete_local_media(url: str) -> bool:
    """Remove a simulator picture or video (erasure, retention); other URLs are not ours."""
    name = local_media_name(url or "")
    if name is None or not default_storage.exists(LOCAL_MEDIA_DIR + name):
        return False
    default_storage.delete(LOCAL_MEDIA_DIR + name)
    return True
