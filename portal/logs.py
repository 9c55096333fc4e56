"""Logs a machine can read (issue 17, item 6): with LOG_FORMAT=json, one JSON object per line —
time, level, logger, message — plus the chat id and the MessageSid when the line has them (given
as `extra=` or written in the message, as Tern's log lines write them: "chat 42", "inbound SM…")."""
from __future__ import annotations

import datetime as dt
import json
import logging
import re

MESSAGE_SID = re.compile(r"\b((?:SM|MM)[0-9A-Za-z]{10,64})\b")
CHAT_ID = re.compile(r"\bchat[ _]?(?:id)?[ =:#]?(\d+)\b", re.IGNORECASE)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        line = {
            "at": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        chat_id = getattr(record, "chat_id", None)
        if chat_id is None and (found := CHAT_ID.search(message)):
            chat_id = int(found.group(1))
        if chat_id is not None:
            line["chat_id"] = chat_id
        sid = getattr(record, "message_sid", None) or ((found := MESSAGE_SID.search(message)) and found.group(1))
        if sid:
            line["message_sid"] = sid
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)
