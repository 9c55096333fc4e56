"""The one exception the chat services raise: an action refused, with a sentence for the agent or
the API client and a short code."""


class ChatActionError(Exception):
    def __init__(self, message: str, *, code: str = "refused"):
        super().__init__(message)
        self.message = message
        self.code = code
