"""Every admin page opens: the list, add and change page of every registered model, the project's
and the third-party ones (auth, django-q2), with the demo data loaded."""
import re
import uuid
from io import StringIO

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ, Schedule, Task
from django_q.signing import SignedPackage

from portal.credentials import create_api_credential
from portal.models import DeliveryLog, EventWebhook, WebhookEvent
from portal.singletons import SingletonModel
from sms.models import InboundMessage, InboundState, SessionlessRequest

REGISTERED = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)
PROJECT_APPS = {"portal", "queues", "sms", "chats"}
SEARCHABLE = [(model, model_admin) for model, model_admin in REGISTERED if model_admin.search_fields]


def model_id(model) -> str:
    return model._meta.label


def admin_url(model, view, *args):
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def make_task(success: bool) -> Task:
    now = timezone.now()
    return Task.objects.create(
        id=uuid.uuid4().hex,
        name=f"demo-{'ok' if success else 'failed'}",
        func="math.floor",
        args=(1.5,),
        kwargs={},
        result=1 if success else "Traceback: demo failure",
        started=now,
        stopped=now,
        success=success,
        attempt_count=1,
    )


def make_queued_task() -> OrmQ:
    package = {"id": uuid.uuid4().hex, "name": "demo-queued", "func": "math.floor", "args": (1.5,), "kwargs": {}}
    return OrmQ.objects.create(key="tern", payload=SignedPackage.dumps(package))


def make_chat():
    from chats.models import Chat, ChatEvent, Message
    from sms.models import OutboundMessage, PhoneNumber

    number = PhoneNumber.objects.get(number="+15550100001")
    chat = Chat.objects.create(consumer_number="+15557654321", portal_number=number, status="finished", finish_reason="expired_unanswered")
    reply = OutboundMessage.objects.create(to_number="+15557654321", from_number=number.number, body="Welcome!", status="undelivered", error_code="30003")
    Message.objects.create(chat=chat, author="consumer", body="<b>Hi</b>")
    Message.objects.create(chat=chat, author="system", body="Welcome!", outbound=reply)
    ChatEvent.objects.create(chat=chat, kind="status.finished", by="system", data={"from": "queued"})
    return chat


def make_erasure():
    from chats.erasure import erase_consumer

    return erase_consumer("+15557650123", reason="Asked by email")


def make_call():
    from chats.models import Call

    return Call.objects.create(call_sid="CA" + "0" * 32, caller_number="+15557654321")


# What the demo data does not contain, made here so that every change page is opened once.
EXTRA_OBJECTS = {
    "chats.Chat": make_chat,
    "chats.Call": make_call,
    "chats.Erasure": lambda: make_erasure(),
    "auth.Group": lambda: Group.objects.create(name="Supervisors"),
    "django_q.Schedule": lambda: Schedule.objects.create(name="demo", func="math.floor", args="1.5"),
    "django_q.Success": lambda: make_task(success=True),
    "django_q.Failure": lambda: make_task(success=False),
    "django_q.OrmQ": make_queued_task,
    "portal.ApiCredential": lambda: create_api_credential(name="Billing system")[0],
    "portal.EventWebhook": lambda: EventWebhook.objects.create(
        url="https://hooks.example.com/tern", event_types=[WebhookEvent.CHAT_CREATED]
    ),
    "portal.DeliveryLog": lambda: DeliveryLog.objects.create(
        webhook=EventWebhook.objects.create(url="https://hooks.example.com/log", event_types=["chat.created"]),
        event_id="e1",
        event_type="chat.created",
        payload={"id": "e1", "type": "chat.created", "data": {}},
        attempts=1,
        last_status_code=500,
        history=[{"at": "2030-01-01T00:00:00+00:00", "status_code": 500, "error": "HTTP 500", "ms": 12}],
    ),
    "sms.InboundMessage": lambda: InboundMessage.objects.create(
        message_sid="SMadmin", from_number="+15557654321", to_number="+15550100002", body="Hi",
        state=InboundState.FAILED, attempts=3, error="OperationalError: database is locked",
    ),
    "sms.SessionlessRequest": lambda: SessionlessRequest.objects.create(
        request_id="slr_demo", from_number="+15550100002", to_numbers=["+15557654321"], messages=["Hi"],
        expires_at=timezone.now(),
    ),
}


@pytest.fixture(scope="module")
def demo_data(django_db_setup, django_db_blocker):
    """The demo data, seeded once for the module's hundred-odd pages (a seeding costs most of a
    second) inside a transaction that holds every test's own and is rolled back after the last."""
    with django_db_blocker.unblock(), transaction.atomic():
        call_command("seed_demo", stdout=StringIO())
        yield
        transaction.set_rollback(True)


@pytest.fixture
def demo_admin(demo_data, db, admin_client):
    return admin_client


def first_object(model, model_admin, request):
    obj = model_admin.get_queryset(request).order_by("pk").first()
    if obj is None and issubclass(model, SingletonModel):
        model.load()
    elif obj is None and model._meta.label in EXTRA_OBJECTS:
        EXTRA_OBJECTS[model._meta.label]()
    if obj is None:
        obj = model_admin.get_queryset(request).order_by("pk").first()
    return obj


def test_the_walk_covers_the_project_and_third_party_admins():
    labels = {model._meta.label for model, _ in REGISTERED}

    assert {"auth.User", "auth.Group", "django_q.Schedule", "django_q.Success", "django_q.Failure"} <= labels
    assert {"portal.ChatSettings", "queues.Queue", "sms.PhoneNumber"} <= labels


@pytest.mark.parametrize("model, model_admin", REGISTERED, ids=[model_id(m) for m, _ in REGISTERED])
def test_every_list_page_opens(demo_admin, model, model_admin):
    response = demo_admin.get(admin_url(model, "changelist"), follow=True)

    assert response.status_code == 200
    if model._meta.app_label in PROJECT_APPS:
        assert " object (" not in response.content.decode()


@pytest.mark.parametrize("model, model_admin", SEARCHABLE, ids=[model_id(m) for m, _ in SEARCHABLE])
def test_every_list_page_opens_with_a_search(demo_admin, model, model_admin):
    response = demo_admin.get(admin_url(model, "changelist"), {"q": "a"}, follow=True)

    assert response.status_code == 200


@pytest.mark.parametrize("model, model_admin", REGISTERED, ids=[model_id(m) for m, _ in REGISTERED])
def test_every_add_page_opens_unless_adding_is_not_offered(demo_admin, model, model_admin):
    response = demo_admin.get(admin_url(model, "add"), follow=True)

    if model_admin.has_add_permission(response.wsgi_request) or type(model_admin).add_view is not (
        admin.ModelAdmin.add_view
    ):
        # Singletons forward their add page to the one row, which opens.
        assert response.status_code == 200
    else:
        # Task history (django-q2's Success, Failure, queued tasks) cannot be added by hand.
        assert response.status_code == 403


@pytest.mark.parametrize("model, model_admin", REGISTERED, ids=[model_id(m) for m, _ in REGISTERED])
def test_every_change_page_opens(demo_admin, model, model_admin):
    request = demo_admin.get(reverse("admin:index")).wsgi_request
    obj = first_object(model, model_admin, request)
    assert obj is not None, f"no {model._meta.label} to open: add one to the demo data or to EXTRA_OBJECTS"

    response = demo_admin.get(admin_url(model, "change", obj.pk), follow=True)

    assert response.status_code == 200
    assert response.redirect_chain == []
    if model._meta.app_label in PROJECT_APPS:
        assert " object (" not in response.content.decode()  # every row is named, never "ChatEvent object (1)"


def test_the_admin_index_lists_every_registered_model(demo_admin):
    response = demo_admin.get(reverse("admin:index"))

    assert response.status_code == 200
    body = response.content.decode()
    for model, _ in REGISTERED:
        assert admin_url(model, "changelist") in body, model._meta.label


def test_a_chat_page_shows_its_transcript_with_delivery_and_cannot_be_edited(demo_admin):
    chat = make_chat()

    page = demo_admin.get(reverse("admin:chats_chat_change", args=[chat.pk])).content.decode()

    assert "&lt;b&gt;Hi&lt;/b&gt;" in page  # the consumer's text, as text
    assert "undelivered (30003)" in page
    assert "Status: finished" in page  # the event, by its label
    assert re.search(r"Chat subtype:</label>\s*<div class=\"readonly\">inbound</div>", page)  # as the API says
    assert re.search(r"CRM contact to choose:</label>\s*<div class=\"readonly\">No</div>", page)
    assert 'name="_save"' not in page
    assert demo_admin.post(reverse("admin:chats_chat_delete", args=[chat.pk]), {"post": "yes"}).status_code == 403
