"""The Outbound SMS API's request (SPEC A1): the body of `POST /apps/api/v1/sms` read and checked
in the order of SPEC A1's table, first failure wins, each refusal in its documented words.

DRF would check each field on its own and collect every error in field order; the table's order
runs across fields and has two rows that need the portal's state among them. So each field takes
its value as sent (any JSON type; absent, null and "" alike), and `validate` runs the rows in
the table's order, raising the first failure; the state rows are the service's
(`chats.api_sms.check_enabled`, `chats.api_sms.sending_number`), called at their place. What it
answers is what `chats.api_sms.send_api_sms` takes."""
from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from chats import api_sms
from chats.api_sms import AgentRef, ApiSmsError, TicketRef
from chats.models import API_INITIATED
from sms.numbers import parse_e164, validate_portal_number
from sms.segments import MAX_BODY_CHARS

TEXT = {"type": "string", "minLength": 1}


class RequestValue(serializers.Field):
    """A body value as sent, or None when absent, null or "": `validate` judges it, so DRF's own
    "This field is required." or "Not a valid string." never answers in place of the table."""

    def get_value(self, dictionary):
        return dictionary.get(self.field_name, empty)  # a form's field: its last value, as request.data.get

    def validate_empty_values(self, data):
        if data is empty or data is None or (isinstance(data, str) and data == ""):
            return True, None
        return False, data

    def to_internal_value(self, data):
        return data

    def to_representation(self, value):
        return value


@extend_schema_field(TEXT)
class TextValue(RequestValue):
    pass


@extend_schema_field({**TEXT, "example": "+15557654321"})
class PhoneValue(RequestValue):
    pass


@extend_schema_field({**TEXT, "format": "email"})
class EmailValue(RequestValue):
    pass


@extend_schema_field(OpenApiTypes.INT)
class IntegerValue(RequestValue):
    pass


def _text(value) -> str | None:
    """A value as stripped text; None when it is not text or only blanks."""
    return (value.strip() or None) if isinstance(value, str) else None


def _refuse(message: str, code: str = "invalid"):
    raise serializers.ValidationError(message, code=code)


def _agent(agent_id, agent_email) -> AgentRef | None:
    """The row "both agent_id and agent_email"; then the agent named, None when none is."""
    email = _text(agent_email)
    if agent_id is not None and email:
        _refuse(ApiSmsError.BOTH_AGENT_FIELDS)
    if agent_id is not None:
        text = str(agent_id).strip()
        named = not isinstance(agent_id, bool) and text.isdecimal()
        return AgentRef(pk=int(text)) if named else AgentRef()
    return AgentRef(email=email) if email else None


def _chat_type(chat_type, chat_subtype) -> None:
    """The rows "chat_type missing", "chat_type not sms"; then chat_subtype, if given."""
    if chat_type is None:
        _refuse(ApiSmsError.CHAT_TYPE_MISSING)
    if _text(chat_type) is None or chat_type.strip().lower() != "sms":
        _refuse(ApiSmsError.CHAT_TYPE_INVALID)
    if chat_subtype is not None and (_text(chat_subtype) or "").lower() != API_INITIATED:
        _refuse(ApiSmsError.CHAT_SUBTYPE_INVALID)


def _consumer(end_user_number) -> str:
    """The rows "end_user_number missing", "end_user_number malformed" (E.164)."""
    if end_user_number is None:
        _refuse(ApiSmsError.END_USER_MISSING)
    consumer = _text(end_user_number)
    if consumer is None or parse_e164(consumer) is None:
        _refuse(ApiSmsError.END_USER_INVALID)
    return consumer


def _sender(outbound_number) -> str:
    """The rows "outbound_number missing", "outbound_number malformed" (E.164 or a short code)."""
    if outbound_number is None:
        _refuse(ApiSmsError.OUTBOUND_MISSING)
    sender = _text(outbound_number) or ""
    try:
        validate_portal_number(sender)
    except Exception:  # noqa: BLE001 — a ValidationError: any malformed value
        _refuse(ApiSmsError.OUTBOUND_INVALID)
    return sender


def _body(message) -> str:
    """The rows "message empty", "message too long"."""
    body = _text(message)
    if body is None:
        _refuse(ApiSmsError.MESSAGE_MISSING)
    if len(body) > MAX_BODY_CHARS:
        _refuse(ApiSmsError.MESSAGE_TOO_LONG.format(over=len(body) - MAX_BODY_CHARS), code="too_long")
    return body


def _ticket(ticket_id) -> TicketRef | None:
    """The CRM record a ticket_id names: a number is its id, other text its reference."""
    if ticket_id is None:
        return None
    text = str(ticket_id).strip() if isinstance(ticket_id, (str, int)) and not isinstance(ticket_id, bool) else ""
    if text.isdecimal():
        return TicketRef(pk=int(text)) if len(text) < 18 else TicketRef()
    return TicketRef(reference=text) if text else TicketRef()


class OutboundSmsSerializer(serializers.Serializer):
    """The body of POST /apps/api/v1/sms. Checked in the order of the documented refusals (400),
    the first failure answering."""

    chat_type = TextValue(help_text='"sms" (case-insensitive).')
    chat_subtype = TextValue(required=False, help_text='"api_initiated" (the default).')
    end_user_number = PhoneValue(help_text="The consumer, in E.164 (+15557654321).")
    outbound_number = PhoneValue(
        help_text="A verified SMS number of this portal assigned to a queue: its incoming queue (or, for an "
        "outbound-only number, its first queue) takes the consumer's reply."
    )
    message = TextValue(help_text="At most 1,600 characters; long texts go as several segments.")
    agent_id = IntegerValue(required=False, help_text="An agent to assign the new chat to.")
    agent_email = EmailValue(required=False, help_text="The same agent by e-mail; not with agent_id.")
    ticket_id = TextValue(required=False, help_text="A CRM record id (or reference) to link.")

    def validate(self, attrs) -> dict:
        """SPEC A1's rows up to the message, in the table's order: the keyword arguments of
        `chats.api_sms.send_api_sms`, which checks the rows after them. The service's refusals
        (ChatActionError) pass through as they are."""
        api_sms.check_enabled()
        agent = _agent(attrs.get("agent_id"), attrs.get("agent_email"))
        _chat_type(attrs.get("chat_type"), attrs.get("chat_subtype"))
        consumer = _consumer(attrs.get("end_user_number"))
        sender = _sender(attrs.get("outbound_number"))
        number, queue = api_sms.sending_number(sender, consumer)
        body = _body(attrs.get("message"))
        ticket = _ticket(attrs.get("ticket_id"))
        return {"consumer": consumer, "number": number, "queue": queue, "body": body, "agent": agent, "ticket": ticket}
