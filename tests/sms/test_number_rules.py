"""SPEC C4: the rules on the portal's numbers and their queue assignments, checked where an admin
meets them — the real admin add/change pages — and on the models where a form is impractical."""
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from queues.models import Queue
from sms.models import NumberDirection, NumberRole, NumberUsage, PhoneNumber, QueueNumber
from sms.numbers import is_us_number, mask_number, validate_portal_number
from tests.factories import (
    add_inline_row,
    admin_form_data,
    admin_page_data,
    inline_prefix,
    link_number,
    make_number,
    make_queue,
    page_text,
)

FORMAT_ERROR = "Enter the number in E.164 form, with + and the country code"


def post_number_add(admin_client, **fields):
    """Submit the add page of a phone number with `fields` filled in."""
    url = reverse("admin:sms_phonenumber_add")
    return admin_client.post(url, admin_page_data(admin_client, url, **fields))


def post_number_change(admin_client, number, **fields):
    """Submit the number's admin page with `fields` changed."""
    url = reverse("admin:sms_phonenumber_change", args=[number.pk])
    return admin_client.post(url, admin_page_data(admin_client, url, **fields))


def post_with_queue_links(admin_client, url, *rows: dict):
    """Submit the admin page at `url` with one more row in its QueueNumber inline per dict of
    fields in `rows` (the numbers inline of a queue's page, the queues inline of a number's)."""
    page = admin_client.get(url)
    assert page.status_code == 200
    data, prefix = admin_form_data(page), inline_prefix(page, QueueNumber)
    for fields in rows:
        add_inline_row(data, prefix, **fields)
    return admin_client.post(url, data)


def post_queue_with_number(admin_client, queue, number, role):
    """Submit the queue's admin page with one more row in its numbers inline."""
    url = reverse("admin:queues_queue_change", args=[queue.pk])
    return post_with_queue_links(admin_client, url, {"number": number.pk, "role": role})


def post_number_with_queues(admin_client, number, *links):
    """Submit the number's admin page with one more row in its queues inline per (queue, role)."""
    url = reverse("admin:sms_phonenumber_change", args=[number.pk])
    return post_with_queue_links(admin_client, url, *({"queue": queue.pk, "role": role} for queue, role in links))


# --- Number format ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["5551234", "+1555", "1234567", "15551234567", "+0123456789", "1234"])
def test_admin_refuses_a_number_that_is_neither_e164_nor_a_short_code(admin_client, value):
    # When the admin saves a malformed number on the add page of a phone number
    response = post_number_add(admin_client, number=value)

    # Then the page comes back with a readable error and nothing is saved
    assert response.status_code == 200
    assert FORMAT_ERROR in page_text(response)
    assert not PhoneNumber.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["12345", "123456", "+15551234567", "+447911123456"])
def test_admin_saves_an_e164_number_or_a_five_or_six_digit_short_code(admin_client, value):
    # When the admin saves a well-formed number on the add page of a phone number
    response = post_number_add(admin_client, number=value, label="Line")

    # Then it is stored, unverified until the Verify action runs
    assert response.status_code == 302
    saved = PhoneNumber.objects.get(number=value)
    assert not saved.is_verified


@pytest.mark.parametrize("value", ["12345", "123456", "+15551234567"])
def test_validator_accepts_long_codes_and_short_codes(value):
    validate_portal_number(value)


@pytest.mark.parametrize("value", ["", "5551234", "+1555", "1234567", "+1 555 123 4567", "abcde"])
def test_validator_refuses_anything_else(value):
    with pytest.raises(ValidationError) as error:
        validate_portal_number(value)
    assert FORMAT_ERROR in error.value.messages[0]


# --- Assignment rules, through the queue admin's numbers inline --------------------------------


@pytest.mark.django_db
def test_an_incoming_number_cannot_be_assigned_to_a_second_queue(admin_client):
    # Given a number that is already the incoming number of Sales
    number = make_number("+15550000001")
    link_number(make_queue("Sales"), number, NumberRole.INCOMING)
    support = make_queue("Support")

    # When the admin makes it the incoming number of Support too
    response = post_queue_with_number(admin_client, support, number, NumberRole.INCOMING)

    # Then the page explains that the number already belongs to Sales, and nothing is saved
    assert response.status_code == 200
    assert "+15550000001 is already the incoming number of queue Sales." in page_text(response)
    assert not support.number_links.exists()


@pytest.mark.django_db
def test_an_incoming_number_of_one_queue_may_be_an_outbound_number_of_others(admin_client):
    # Given a number that is the incoming number of Sales
    number = make_number("+15550000001")
    link_number(make_queue("Sales"), number, NumberRole.INCOMING)
    support = make_queue("Support")

    # When the admin adds it to Support as an outbound number
    response = post_queue_with_number(admin_client, support, number, NumberRole.OUTBOUND)

    # Then it is saved: outbound numbers may be shared
    assert response.status_code == 302
    assert support.number_links.get().role == NumberRole.OUTBOUND


@pytest.mark.django_db
def test_one_queue_may_have_several_incoming_numbers(admin_client):
    support = make_queue("Support")
    link_number(support, make_number("+15550000001"), NumberRole.INCOMING)

    response = post_queue_with_number(admin_client, support, make_number("+15550000002"), NumberRole.INCOMING)

    assert response.status_code == 302
    assert support.number_links.filter(role=NumberRole.INCOMING).count() == 2


UNVERIFIED = "+15550000001 is not verified yet. Run the Verify action on it first."
IN_CALL_SMS = "+15550000001 is an in-call SMS number and cannot be used for SMS chat."
OUTBOUND_ONLY = "+15550000001 is outbound only and cannot be an incoming number."


@pytest.mark.django_db
@pytest.mark.parametrize(
    "number_fields, role, message",
    [
        # A number the Verify action has not confirmed: the page asks to verify it first.
        pytest.param({"verified": False}, NumberRole.INCOMING, UNVERIFIED, id="unverified-incoming"),
        pytest.param({"verified": False}, NumberRole.OUTBOUND, UNVERIFIED, id="unverified-outbound"),
        # A verified number set aside for in-call SMS cannot be used for SMS chat at all.
        pytest.param({"usage": NumberUsage.IN_CALL}, NumberRole.INCOMING, IN_CALL_SMS, id="in-call-sms-incoming"),
        pytest.param({"usage": NumberUsage.IN_CALL}, NumberRole.OUTBOUND, IN_CALL_SMS, id="in-call-sms-outbound"),
        # A verified outbound-only number cannot be an incoming number.
        pytest.param(
            {"direction": NumberDirection.OUTBOUND_ONLY}, NumberRole.INCOMING, OUTBOUND_ONLY, id="outbound-only-incoming"
        ),
    ],
)
def test_the_queue_page_refuses_a_number_unfit_for_the_role(admin_client, number_fields, role, message):
    # Given such a number and an SMS chat queue
    number = make_number("+15550000001", **number_fields)
    support = make_queue("Support")

    # When the admin assigns it to the queue in that role
    response = post_queue_with_number(admin_client, support, number, role)

    # Then it is refused with a readable reason, and nothing is saved
    assert response.status_code == 200
    assert message in page_text(response)
    assert not QueueNumber.objects.exists()


@pytest.mark.django_db
def test_an_outbound_only_number_can_be_an_outbound_number(admin_client):
    number = make_number("+15550000001", direction=NumberDirection.OUTBOUND_ONLY)
    support = make_queue("Support")

    response = post_queue_with_number(admin_client, support, number, NumberRole.OUTBOUND)

    assert response.status_code == 302
    assert support.number_links.get().number == number


@pytest.mark.django_db
@pytest.mark.parametrize(
    "role, field, value, message, kept",
    [
        # An SMS chat queue's number cannot become an in-call SMS number.
        pytest.param(
            NumberRole.OUTBOUND,
            "usage",
            NumberUsage.IN_CALL,
            "remove it from them before using it for in-call SMS",
            NumberUsage.SMS_CHAT,
            id="to-in-call-sms",
        ),
        # A queue's incoming number cannot become outbound only; the message names the queue.
        pytest.param(
            NumberRole.INCOMING,
            "direction",
            NumberDirection.OUTBOUND_ONLY,
            "This number is the incoming number of queue Support; it cannot be outbound only.",
            NumberDirection.INCOMING,
            id="to-outbound-only",
        ),
    ],
)
def test_the_number_page_refuses_a_change_its_queue_assignment_forbids(admin_client, role, field, value, message, kept):
    # Given a number in use by the queue Support
    number = make_number("+15550000001")
    link_number(make_queue("Support"), number, role)

    # When the admin changes its usage or direction on its own page
    response = post_number_change(admin_client, number, **{field: value})

    # Then it is refused and the number keeps what it had
    assert response.status_code == 200
    assert message in page_text(response)
    number.refresh_from_db()
    assert getattr(number, field) == kept


@pytest.mark.django_db
def test_the_number_page_refuses_an_incoming_assignment_of_an_outbound_only_number(admin_client):
    # Given an outbound-only number's own admin page, with its "queues using this number" inline
    number = make_number("+15550000001", direction=NumberDirection.OUTBOUND_ONLY)
    support = make_queue("Support")

    # When the admin adds Support as an incoming queue there
    response = post_number_with_queues(admin_client, number, (support, NumberRole.INCOMING))

    # Then it is refused the same way as from the queue page
    assert response.status_code == 200
    assert OUTBOUND_ONLY in page_text(response)
    assert not QueueNumber.objects.exists()


@pytest.mark.django_db
def test_the_number_page_refuses_two_incoming_queues_in_one_submission(admin_client):
    # Given a number's admin page, not yet used by any queue
    number = make_number("+15550000001")
    sales, support = make_queue("Sales"), make_queue("Support")

    # When the admin makes it the incoming number of two queues at once
    response = post_number_with_queues(admin_client, number, (sales, NumberRole.INCOMING), (support, NumberRole.INCOMING))

    # Then the page explains the rule (rather than failing on the database's unique index)
    assert response.status_code == 200
    assert "+15550000001 can be the incoming number of one queue only, not of Sales, Support." in page_text(
        response
    )
    assert not QueueNumber.objects.exists()


@pytest.mark.django_db
def test_the_number_page_saves_one_incoming_queue_and_several_outbound_ones(admin_client):
    number = make_number("+15550000001")
    queues = [make_queue(name) for name in ["Sales", "Support", "Billing"]]

    response = post_number_with_queues(
        admin_client,
        number,
        (queues[0], NumberRole.INCOMING),
        (queues[1], NumberRole.OUTBOUND),
        (queues[2], NumberRole.OUTBOUND),
    )

    assert response.status_code == 302
    assert sorted(number.queue_links.values_list("queue__name", "role")) == [
        ("Billing", NumberRole.OUTBOUND),
        ("Sales", NumberRole.INCOMING),
        ("Support", NumberRole.OUTBOUND),
    ]


# --- One global outbound number -------------------------------------------------------------


@pytest.mark.django_db
def test_a_second_global_outbound_number_is_refused(admin_client):
    # Given a global outbound number
    make_number("+15550000001", is_global_outbound=True)

    # When the admin adds another number marked global outbound
    response = post_number_add(admin_client, number="+15550000002", is_global_outbound="on")

    # Then the page names the current one, and the new number is not saved
    assert response.status_code == 200
    assert "+15550000001 is already the global outbound number; untick it there first." in page_text(response)
    assert not PhoneNumber.objects.filter(number="+15550000002").exists()


@pytest.mark.django_db
def test_full_clean_refuses_a_second_global_outbound_number():
    make_number("+15550000001", is_global_outbound=True)
    second = PhoneNumber(number="+15550000002", is_global_outbound=True)

    with pytest.raises(ValidationError) as error:
        second.full_clean()

    assert "is_global_outbound" in error.value.message_dict


@pytest.mark.django_db
def test_the_global_outbound_number_can_be_saved_again_unchanged():
    number = make_number("+15550000001", is_global_outbound=True)

    number.full_clean()  # does not count itself as "another" global number


@pytest.mark.django_db
def test_full_clean_of_a_queue_number_applies_the_same_rules_as_the_admin():
    # Given an unverified number, an in-call number, an outbound-only number and a taken incoming one
    queue = make_queue("Support")
    unverified = make_number("+15550000001", verified=False)
    in_call = make_number("+15550000002", usage=NumberUsage.IN_CALL)
    outbound_only = make_number("+15550000003", direction=NumberDirection.OUTBOUND_ONLY)
    taken = make_number("+15550000004")
    link_number(make_queue("Sales"), taken, NumberRole.INCOMING)

    # Then each assignment is refused by full_clean()
    for number, role in [
        (unverified, NumberRole.OUTBOUND),
        (in_call, NumberRole.OUTBOUND),
        (outbound_only, NumberRole.INCOMING),
        (taken, NumberRole.INCOMING),
    ]:
        with pytest.raises(ValidationError):
            QueueNumber(queue=queue, number=number, role=role).full_clean()
    assert Queue.objects.get(pk=queue.pk).number_links.count() == 0


# --- Masking and the US check ---------------------------------------------------------------


def test_mask_number_keeps_the_country_code_and_last_four_digits():
    masked = mask_number("+15551234567")

    assert masked.startswith("+1")
    assert masked.endswith("4567")
    assert masked == "+1" + "•" * 6 + "4567"
    assert "555123" not in masked


def test_mask_number_uses_the_whole_country_code():
    assert mask_number("+447911123456") == "+44" + "•" * 6 + "3456"


@pytest.mark.parametrize("value", ["", "12345", "123456"])
def test_mask_number_leaves_short_codes_and_empty_values_alone(value):
    assert mask_number(value) == value


def test_mask_number_hides_a_number_not_in_e164_too():
    masked = mask_number("5551234567")

    assert masked.endswith("4567")
    assert "123" not in masked
    assert len(masked) == len("5551234567")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("+15551234567", True),
        ("+12025550123", True),
        ("12345", True),
        ("123456", True),
        ("+447911123456", False),
        ("+33612345678", False),
        ("5551234567", False),
        ("", False),
        ("+1555", False),
    ],
)
def test_is_us_number(value, expected):
    assert is_us_number(value) is expected
