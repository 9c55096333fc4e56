"""What every endpoint of the public REST API shares (SPEC A): API-credential authentication,
the per-credential rate limit, and errors as {"error": "<sentence>"}. The endpoints themselves
live with their app (sms/api.py, chats/public_api.py) and are routed by portal/urls.py."""
from __future__ import annotations

from django.conf import settings
from django.http import Http404
from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from portal import request_limit
from portal.authentication import ApiCredentialAuthentication
from portal.models import ApiCredential


class ApiCredentialThrottle(BaseThrottle):
    """Requests per credential (SPEC A, issue 6): `API_RATE_LIMIT` (e.g. "600/minute"), read at
    each request, counted atomically across threads and web processes (portal.request_limit);
    above it, 429 with Retry-After."""

    def allow_request(self, request, view):
        credential = request.auth
        ident = credential.key if isinstance(credential, ApiCredential) else self.get_ident(request)
        limit, period = request_limit.parse_rate(settings.API_RATE_LIMIT)
        self.decision = request_limit.take(f"api:{ident}", limit=limit, period=period)
        return self.decision.allowed

    def wait(self):
        return self.decision.retry_after


class ApiError(exceptions.APIException):
    """A refusal with a documented sentence, answered as {"error": message}."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, *, status_code: int = status.HTTP_400_BAD_REQUEST):
        super().__init__(message)
        self.status_code = status_code


class PublicApiView(APIView):
    authentication_classes = [ApiCredentialAuthentication]
    permission_classes = [permissions.IsAuthenticated]
    throttle_classes = [ApiCredentialThrottle]

    def request_object(self) -> dict:
        """The request body as an object; anything else (a list, a string) is refused."""
        data = self.request.data
        if not isinstance(data, dict):
            raise ApiError("The request body must be a JSON object.")
        return data

    # What a 404 of this endpoint says: the thing it looks for, never Django's model name.
    not_found = "Not found."

    def handle_exception(self, exc):
        if isinstance(exc, serializers.ValidationError):
            return Response({"error": validation_message(exc.detail)}, status=status.HTTP_400_BAD_REQUEST)
        if isinstance(exc, Http404):  # get_object_or_404's text names the model
            return Response({"error": self.not_found}, status=status.HTTP_404_NOT_FOUND)
        response = super().handle_exception(exc)
        if response is not None and isinstance(response.data, dict) and "detail" in response.data:
            response.data = {"error": str(response.data["detail"])}
        return response


def validation_message(detail) -> str:
    """The first error of a DRF validation error, as one sentence naming its field."""
    if isinstance(detail, dict):
        field, errors = next(iter(detail.items()))
        message = validation_message(errors)
        return message if message.startswith(str(field)) or field == "non_field_errors" else f"{field}: {message}"
    if isinstance(detail, list) and detail:
        return validation_message(detail[0])
    return str(detail)


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="A sentence for people; the documented messages are exact.")


def error_response(description: str, *examples: tuple[str, str]) -> OpenApiResponse:
    """An OpenAPI response of {"error": …} with one example per documented message."""
    return OpenApiResponse(
        response=ErrorSerializer,
        description=description,
        examples=[OpenApiExample(name, value={"error": message}) for name, message in examples],
    )


UNAUTHORIZED = error_response(
    "Missing, wrong or revoked API credential (HTTP Basic, key:secret).",
    ("No credentials", "Authentication credentials were not provided."),
    ("Wrong or revoked credential", "Invalid API key or secret."),
)
THROTTLED = error_response(
    "Too many requests for this credential; the Retry-After header says how many seconds to wait.",
    ("Throttled", "Request was throttled. Expected available in 12 seconds."),
)
NOT_FOUND = error_response("No such object.", ("Not found", "Not found."))
COMMON_ERRORS = {401: UNAUTHORIZED, 429: THROTTLED}


def public_endpoints_only(endpoints):
    """drf-spectacular preprocessing hook: leave the agent adapter's endpoints out of the schema."""
    return [endpoint for endpoint in endpoints if not endpoint[0].startswith("/apps/api/v1/agent/")]
