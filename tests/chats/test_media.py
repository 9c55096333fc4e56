"""Consumer MMS (SPEC S6): every MediaUrlN is fetched with the account's credentials and stored
with the chat; and texts the portal does not turn into a chat (S1, C4)."""
import pytest

from chats import services
from chats.models import Author, Chat, DisconnectedBy, FinishReason, Media
from portal.models import CrmEntry
from sms.models import InboundMessage, NumberDirection, NumberRole, OutboundMessage
from tests.chats.conftest import CONSUMER, OUTBOUND
from tests.factories import link_number, make_number

JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + b"jpeg-bytes" * 20
PNG = b"\x89PNG\r\n\x1a\n" + b"png-bytes" * 20
MP4 = b"\x00\x00\x00\x18ftypmp42" + b"mp4-bytes" * 50
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def fake(twilio_settings, media_root):
    return twilio_settings


def consumer_message(chat, body):
    return chat.messages.get(author=Author.CONSUMER, body=body)


def test_an_mms_with_three_items_stores_each_with_its_content_type(phone, fake, media_root):
    items = [
        (fake.add_media("photo.jpg", JPEG, "image/jpeg"), "image/jpeg"),
        (fake.add_media("screen.png", PNG, "image/png"), "image/png"),
        (fake.add_media("clip.mp4", MP4, "video/mp4"), "video/mp4"),
    ]

    phone.text("Here are the photos", media=items)

    chat = phone.chat()
    message = consumer_message(chat, "Here are the photos")
    stored = list(message.media.order_by("pk"))
    assert [m.content_type for m in stored] == ["image/jpeg", "image/png", "video/mp4"]
    assert [m.source_url for m in stored] == [url for url, _ in items]
    for media, content, extension in zip(stored, [JPEG, PNG, MP4], [".jpg", ".png", ".mp4"]):
        assert media.error == ""
        assert media.size == len(content)
        assert media.file.name.startswith(f"chats/{chat.pk}/") and media.file.name.endswith(extension)
        with media.file.open("rb") as handle:
            assert handle.read() == content
        assert (media_root / media.file.name).is_file()
    assert [m.kind for m in stored] == ["image", "image", "video"]


def test_media_is_fetched_with_the_account_credentials_and_followed_to_storage(phone, fake):
    url = fake.add_media("photo.jpg", JPEG, "image/jpeg")

    phone.text("", media=[(url, "image/jpeg")])

    api_call = [r for r in fake.requests if "/Media/" in r.path]
    storage_call = [r for r in fake.requests if r.path.startswith("/fake-media-storage/")]
    assert len(api_call) == 1 and "Authorization" in api_call[0].headers
    assert len(storage_call) == 1 and "Authorization" not in storage_call[0].headers
    assert Media.objects.get().file


def test_an_mms_inside_an_assigned_chat_is_stored_with_that_chat(phone, fake, alice, go_online):
    go_online(alice)
    phone.text("Hi")
    phone.text("1")
    url = fake.add_media("receipt.jpg", JPEG, "image/jpeg")

    phone.text("My receipt", media=[(url, "image/jpeg")])

    chat = phone.chat()
    media = Media.objects.get()
    assert media.message.chat == chat and media.message.body == "My receipt"
    assert media.file.name.startswith(f"chats/{chat.pk}/")


def test_an_svg_is_refused_and_never_stored(phone, fake, media_root):
    svg = fake.add_media("drawing.svg", SVG, "image/svg+xml")
    jpg = fake.add_media("photo.jpg", JPEG, "image/jpeg")

    phone.text("Look", media=[(svg, "image/svg+xml"), (jpg, "image/jpeg")])

    refused, kept = Media.objects.order_by("pk")
    assert refused.error == "Refused content type image/svg+xml."
    assert not refused.file
    assert kept.error == "" and kept.file
    assert [p.name for p in (media_root / "chats").rglob("*") if p.is_file()] == [kept.file.name.rsplit("/", 1)[1]]


def test_the_type_the_storage_serves_decides_not_the_one_announced(phone, fake):
    disguised = fake.add_media("drawing.jpg", SVG, "image/svg+xml")

    phone.text("Look", media=[(disguised, "image/jpeg")])

    media = Media.objects.get()
    assert media.content_type == "image/svg+xml"
    assert media.error and not media.file


def test_media_twilio_no_longer_has_is_recorded_as_an_error(phone, fake):
    url = fake.add_media("photo.jpg", JPEG, "image/jpeg").rsplit("/", 1)[0] + "/ME" + "0" * 32

    phone.text("Look", media=[(url, "image/jpeg")])

    media = Media.objects.get()
    assert not media.file
    assert "404" in media.error


def test_a_media_message_is_never_read_as_a_command(phone, fake):
    url = fake.add_media("photo.jpg", JPEG, "image/jpeg")
    phone.text("Hi")

    phone.text("STOP", media=[(url, "image/jpeg")])

    chat = phone.chat()
    assert chat.is_active
    assert consumer_message(chat, "STOP").media.count() == 1


def test_the_crm_transcript_lists_the_consumer_pictures(phone, fake, alice, go_online, committed):
    go_online(alice)
    phone.text("Hi")
    phone.text("1")
    url = fake.add_media("photo.jpg", JPEG, "image/jpeg")
    phone.text("", media=[(url, "image/jpeg")])
    chat = phone.chat()

    committed(services.end_chat, chat=chat, agent=alice, by=DisconnectedBy.AGENT, reason=FinishReason.AGENT_ENDED)

    entry = CrmEntry.objects.get(record=chat.crm_record, kind="transcript")
    media = Media.objects.get()
    with_media = [line for line in entry.data["lines"] if line.get("media")]
    assert len(with_media) == 1
    assert with_media[0]["media"] == [{"content_type": "image/jpeg", "media_id": media.pk, "file": media.file.name}]
    assert media.file.name in entry.text


# --- texts that do not become chats -------------------------------------------------------------


def test_a_text_to_an_outbound_only_number_gets_the_do_not_reply_message(phone, support, chat_settings):
    number = make_number(OUTBOUND, direction=NumberDirection.OUTBOUND_ONLY, messages_per_second=100)
    link_number(support.billing, number, role=NumberRole.OUTBOUND)

    phone.text("Who is this?", to=OUTBOUND)

    assert not Chat.objects.exists()
    reply = OutboundMessage.objects.get()
    assert reply.body == chat_settings.do_not_reply_message
    assert (reply.to_number, reply.from_number) == (CONSUMER, OUTBOUND)
    assert InboundMessage.objects.get().outcome == "not_an_incoming_number"


def test_an_empty_do_not_reply_message_sends_nothing(phone, support, chat_settings):
    chat_settings.do_not_reply_message = ""
    chat_settings.save()
    make_number(OUTBOUND, direction=NumberDirection.OUTBOUND_ONLY)

    phone.text("Who is this?", to=OUTBOUND)

    assert not OutboundMessage.objects.exists()
    assert not Chat.objects.exists()


def test_a_text_to_an_unknown_number_is_logged_and_dropped(phone):
    response = phone.text("Hi", to="+15559998888")

    assert response.status_code == 200
    assert InboundMessage.objects.get().outcome == "unknown_number"
    assert not Chat.objects.exists()
    assert not OutboundMessage.objects.exists()


def test_with_sms_chat_off_nothing_is_created(phone, chat_settings):
    chat_settings.sms_chat_enabled = False
    chat_settings.save()

    phone.text("Hi")

    assert not Chat.objects.exists()
    assert not OutboundMessage.objects.exists()
    assert InboundMessage.objects.get().outcome == "sms_chat_off"


def test_a_queue_with_sms_off_takes_no_chats(phone, support):
    support.menu.sms_enabled = False
    support.menu.save()

    phone.text("Hi")

    assert not Chat.objects.exists()
    assert InboundMessage.objects.get().outcome == "not_an_incoming_number"


# --- the simulator's MMS (issue 14, item 7) ------------------------------------------------------


def simulator_send(client, body, media=None):
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = {"consumer": CONSUMER, "portal": "+15550100001", "body": body}
    if media is not None:
        data["media"] = SimpleUploadedFile(*media)
    return client.post("/simulator/send/", data)


@pytest.fixture
def simulator(admin_client, support, settings, media_root):
    settings.SMS_PROVIDER = "local"
    return admin_client


def test_a_simulator_picture_is_fetched_like_twilios_and_stored_with_the_chat(simulator, committed):
    committed(simulator_send, simulator, "Hi")
    response = committed(simulator_send, simulator, "My receipt", ("receipt.jpg", JPEG, "image/jpeg"))

    assert response.status_code == 200, response.content
    media = Media.objects.get()
    assert media.source_url.startswith("/simulator/media/") and media.content_type == "image/jpeg"
    with media.file.open("rb") as handle:
        assert handle.read() == JPEG
    thread = simulator.get("/simulator/messages/", {"consumer": CONSUMER, "portal": "+15550100001"}).json()["messages"]
    (sent,) = [m for m in thread if m["body"] == "My receipt"]
    assert sent["media"] == [{"url": media.source_url, "content_type": "image/jpeg"}]
    assert b"".join(simulator.get(media.source_url).streaming_content) == JPEG


def test_the_simulator_refuses_what_an_mms_could_not_carry(simulator, settings):
    too_big = ("big.jpg", JPEG + b"\0" * (5 * 1024 * 1024), "image/jpeg")

    assert simulator_send(simulator, "", None).json() == {"error": "Type a message or attach a picture."}
    assert simulator_send(simulator, "x", too_big).json() == {"error": "Attach at most 5 MB, as an MMS carries."}
    assert simulator_send(simulator, "x", ("a.svg", SVG, "image/svg+xml")).status_code == 400
    settings.SMS_PROVIDER = "twilio"
    assert simulator_send(simulator, "x", ("a.jpg", JPEG, "image/jpeg")).json() == {
        "error": "Pictures can be sent from the simulator with the local SMS provider only."
    }
    assert not InboundMessage.objects.exists()
    assert simulator.get("/simulator/media/../../etc/passwd").status_code == 404
