"""Signed Twilio webhook requests, as Twilio sends them, for driving the real views."""
import itertools
import secrets

from django.conf import settings
from twilio.request_validator import RequestValidator

_counter = itertools.count(1)


def new_sid(prefix: str = "SM") -> str:
    return f"{prefix}{secrets.token_hex(16)}"


def sign(url: str, params: dict, token: str | None = None) -> str:
    return RequestValidator(token or settings.TWILIO_AUTH_TOKEN).compute_signature(url, params)


def post_signed(client, path: str, params: dict, *, token: str | None = None, host: str = "testserver", signature: str | None = None):
    """POST form params to `path` with the X-Twilio-Signature Twilio would compute for the URL
    it called (PUBLIC_BASE_URL + path when set, else http://testserver + path)."""
    base = settings.PUBLIC_BASE_URL or f"http://{host}"
    url = base + path
    header = sign(url, params, token) if signature is None else signature
    return client.post(path, params, HTTP_X_TWILIO_SIGNATURE=header, HTTP_HOST=host)


def inbound_params(*, from_number: str, to_number: str, body: str = "", sid: str | None = None, media=(), **extra) -> dict:
    params = {
        "MessageSid": sid or new_sid(),
        "SmsSid": sid or "",
        "AccountSid": settings.TWILIO_ACCOUNT_SID or "AC" + "0" * 32,
        "From": from_number,
        "To": to_number,
        "Body": body,
        "NumMedia": str(len(media)),
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }
    params["SmsSid"] = params["MessageSid"]
    for index, (url, content_type) in enumerate(media):
        params[f"MediaUrl{index}"] = url
        params[f"MediaContentType{index}"] = content_type
    params.update(extra)
    return params


def post_inbound(client, **kwargs):
    return post_signed(client, "/sms/twilio/inbound/", inbound_params(**kwargs))


def post_status(client, *, sid: str, status: str, error_code: str = "", **extra):
    params = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status, **extra}
    if error_code:
        params["ErrorCode"] = error_code
    return post_signed(client, "/sms/twilio/status/", params)
