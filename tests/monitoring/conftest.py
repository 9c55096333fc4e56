"""What the supervisors' tests share: sam, signed in."""
import pytest

from tests.factories import make_supervisor


@pytest.fixture
def sam(client, db):
    """The test client, signed in as sam, a supervisor."""
    client.force_login(make_supervisor("sam"))
    return client
