"""DRF authentication with API credentials over HTTP Basic (key:secret)."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from portal.credentials import authenticate_api_credential


class ApiClient:
    """The request.user of an API call: an integration, not a person."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    def __init__(self, credential):
        self.credential = credential
        self.pk = None
        self.id = None

    def __str__(self):
        return f"API client {self.credential.name}"


class ApiCredentialAuthentication(authentication.BasicAuthentication):
    www_authenticate_realm = "Tern API"

    def authenticate_credentials(self, userid, password, request=None):
        credential = authenticate_api_credential(key=userid, secret=password)
        if credential is None:
            raise exceptions.AuthenticationFailed("Invalid API key or secret.")
        return ApiClient(credential), credential


class ApiCredentialScheme(OpenApiAuthenticationExtension):
    """The OpenAPI security scheme of API credentials (drf-spectacular finds it by the class)."""

    target_class = ApiCredentialAuthentication
    name = "apiCredential"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "basic",
            "description": "An API credential (admin › API credentials, or `manage.py create_api_credential NAME`): "
            "the key as user name, the secret as password.",
        }
