"""django-q2 work of the chats layer."""
import logging
import mimetypes

from django.core.files.base import ContentFile

from chats.models import Media
from sms.providers import ProviderError, get_provider

log = logging.getLogger(__name__)

ALLOWED_MEDIA_PREFIXES = ("image/", "video/", "audio/")
ALLOWED_MEDIA_TYPES = {"application/pdf", "text/vcard", "text/x-vcard"}
MAX_MEDIA_BYTES = 5 * 1024 * 1024  # Twilio's MMS limit
# Served back to agents; SVG can carry script, so it is never stored as an image.
REFUSED_MEDIA_TYPES = {"image/svg+xml"}


def media_type_allowed(content_type: str) -> bool:
    if content_type in REFUSED_MEDIA_TYPES:
        return False
    return content_type.startswith(ALLOWED_MEDIA_PREFIXES) or content_type in ALLOWED_MEDIA_TYPES


def fetch_media(media_id: int) -> str:
    """Download one consumer MMS item with the account's credentials and store it with the chat."""
    media = Media.objects.select_related("message").filter(pk=media_id).first()
    if media is None or media.file:
        return "skipped"
    try:
        fetched = get_provider().fetch_media(media.source_url)
    except ProviderError as exc:
        media.error = exc.message[:200]
        media.save(update_fields=["error"])
        log.warning("media %s of chat %s not fetched: %s", media_id, media.message.chat_id, exc.message)
        return "failed"
    content_type = fetched.content_type or media.content_type
    if not media_type_allowed(content_type):
        media.error = f"Refused content type {content_type}."
        media.content_type = content_type
        media.save(update_fields=["error", "content_type"])
        return "refused"
    if len(fetched.content) > MAX_MEDIA_BYTES:
        media.error = "Larger than 5 MB."
        media.save(update_fields=["error"])
        return "too large"
    extension = mimetypes.guess_extension(content_type) or ".bin"
    media.content_type = content_type
    media.size = len(fetched.content)
    media.file.save(f"media-{media.pk}{extension}", ContentFile(fetched.content), save=False)
    media.save(update_fields=["file", "content_type", "size"])
    return "stored"
