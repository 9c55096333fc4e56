"""LOG_FORMAT=json (issue 17, item 6): one JSON object per line, with the chat id and the
MessageSid where the line has them."""
import json
import logging
import os
import subprocess
import sys

from django.conf import settings

from portal.logs import JsonFormatter


def record(message, *args, **extra):
    rec = logging.LogRecord("chats.flow", logging.INFO, __file__, 1, message, args, None)
    rec.__dict__.update(extra)
    return rec


def test_a_line_carries_the_message_sid_and_the_chat_id():
    line = json.loads(JsonFormatter().format(record("inbound %s from=%s: %s in chat %s", "SM" + "a1" * 16, "+15557654321", "queued", 42)))

    assert line["message_sid"] == "SM" + "a1" * 16 and line["chat_id"] == 42
    assert line["level"] == "INFO" and line["logger"] == "chats.flow" and line["message"].startswith("inbound SM")


def test_extra_fields_win_and_plain_lines_have_neither():
    given = json.loads(JsonFormatter().format(record("sent", chat_id=7, message_sid="SMlocal0123456789abcdef")))
    plain = json.loads(JsonFormatter().format(record("sweeper ran: %s", {"chats": 0})))

    assert (given["chat_id"], given["message_sid"]) == (7, "SMlocal0123456789abcdef")
    assert "chat_id" not in plain and "message_sid" not in plain


def test_the_setting_turns_it_on_for_every_line(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings", "LOG_FORMAT": "json", "TERN_VAR_DIR": str(tmp_path)}
    probe = "import logging; logging.getLogger('chats.flow').warning('chat %s: survey not sent', 9)"

    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", probe], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60
    )

    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line["chat_id"] == 9 and line["message"] == "chat 9: survey not sent"
