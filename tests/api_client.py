"""A client of the public REST API (SPEC A) for the tests: HTTP Basic with an API credential,
JSON in and out, and the request's after-commit work done before it returns."""
import base64

from portal.credentials import create_api_credential


def basic(key: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


class Api:
    def __init__(self, client, capture, credential, secret):
        self.client = client
        self.capture = capture
        self.credential = credential
        self.authorization = basic(credential.key, secret)

    def _headers(self, authorization):
        return {"HTTP_AUTHORIZATION": authorization if authorization is not None else self.authorization}

    def post(self, path: str, data, *, authorization: str | None = None, **extra):
        with self.capture(execute=True):
            return self.client.post(path, data, content_type="application/json", **self._headers(authorization), **extra)

    def get(self, path: str, params=None, *, authorization: str | None = None):
        with self.capture(execute=True):
            return self.client.get(path, params or {}, **self._headers(authorization))


def make_api(client, capture, name: str = "Order system") -> Api:
    credential, secret = create_api_credential(name=name)
    return Api(client, capture, credential, secret)
