"""The base layer's models, one module per concern; imported here so `portal.models.X` and the
migrations' references keep working."""
from portal.models.configuration import (  # noqa: F401
    MAX_DISMISSAL_MINUTES,
    MAX_IN_CALL_MESSAGE_CHARS,
    DEFAULT_DISMISSED_AUTO_RESPONSE,
    english_only,
    minutes_field,
    TimerSettings,
    ChatSettings,
    InCallSmsSettings,
    BlendingMessages,
    PresetMessage,
    OperationSettings,
    ChatShortcut,
)
from portal.models.agents import (  # noqa: F401
    AgentStatus,
    AgentProfile,
    AgentStatusChange,
    Team,
)
from portal.models.credentials import (  # noqa: F401
    ApiCredentialQuerySet,
    ApiCredential,
    hash_secret,
)
from portal.models.event_webhooks import (  # noqa: F401
    WebhookEvent,
    EventWebhook,
    DeliveryLog,
)
from portal.models.crm import (  # noqa: F401
    CrmContact,
    CrmRecord,
    CrmEntry,
)
from portal.models.realtime import (  # noqa: F401
    RealtimeOutbox,
)
