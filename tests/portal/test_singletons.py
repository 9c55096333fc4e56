"""The settings singletons (DESIGN rule 8): one row each, read once per request."""
import pytest

from portal.models import ChatSettings
from portal.singletons import cached_singletons


@pytest.mark.django_db
def test_inside_a_request_the_settings_are_read_once(django_assert_num_queries):
    ChatSettings.load()

    with cached_singletons():
        with django_assert_num_queries(1):
            first = ChatSettings.load()
            again = ChatSettings.load()

    assert again is first


@pytest.mark.django_db
def test_settings_saved_during_a_request_are_what_the_rest_of_it_reads():
    with cached_singletons():
        ChatSettings.load()
        row = ChatSettings.objects.get()  # another instance of the row, like the admin form's
        row.opt_in_message = "Changed in this request."
        row.save()

        assert ChatSettings.load().opt_in_message == "Changed in this request."


@pytest.mark.django_db
def test_the_next_request_reads_what_another_saved_meanwhile():
    with cached_singletons():
        assert ChatSettings.load().sms_chat_enabled
    ChatSettings.objects.update(sms_chat_enabled=False)  # another process

    with cached_singletons():
        assert not ChatSettings.load().sms_chat_enabled


@pytest.mark.django_db
def test_every_request_is_one_block_through_the_middleware(rf, django_assert_num_queries):
    from django.http import HttpResponse

    from portal.singletons import singletons_per_request

    def view(request):
        return HttpResponse(f"{ChatSettings.load().opt_in_message}|{ChatSettings.load().sms_chat_enabled}")

    handler = singletons_per_request(view)
    ChatSettings.load()
    with django_assert_num_queries(1):
        first = handler(rf.get("/"))
    ChatSettings.objects.update(opt_in_message="Changed by the admin.")

    assert handler(rf.get("/")).content.decode().startswith("Changed by the admin.|")
    assert first.content.decode() != "Changed by the admin.|True"
