"""Agents and teams (SPEC C10): a Django user's agent profile with its status and presence counts."""
from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from portal.languages import LanguageListField
from portal.models.configuration import english_only


class AgentStatus(models.TextChoices):
    AVAILABLE = "available", "Available"
    AWAY = "away", "Away"
    OFFLINE = "offline", "Offline"


class AgentProfile(models.Model):
    """What makes a Django user an agent (SPEC C10)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent")
    display_name = models.CharField(max_length=80, help_text="Shown to other agents and in reports.")
    languages = LanguageListField(default=english_only, help_text="Languages the agent can chat in.")
    max_concurrent_chats = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
        help_text="No new chat is offered while the agent holds this many.",
    )
    status = models.CharField(max_length=10, choices=AgentStatus.choices, default=AgentStatus.OFFLINE)
    status_changed_at = models.DateTimeField(default=timezone.now)
    last_assignment_at = models.DateTimeField(
        null=True, blank=True, help_text="Routing offers chats to the longest-idle agent first."
    )
    connection_count = models.PositiveIntegerField(
        default=0, editable=False, help_text="Open adapter connections, across every server process."
    )
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["display_name"]
        permissions = [
            ("view_full_numbers", "Can see full consumer numbers"),
            ("view_monitoring", "Can watch queues and agents live and read reports"),
        ]

    def __str__(self):
        return self.display_name or self.user.get_username()


class Team(models.Model):
    name = models.CharField(max_length=80, unique=True)
    agents = models.ManyToManyField(AgentProfile, related_name="teams", blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class AgentStatusChange(models.Model):
    """One row per change of an agent's status, with its time (SPEC M1, M4): the agents board's
    "for how long" and the reports' occupancy. Written by portal.presence, nowhere else."""

    agent = models.ForeignKey(AgentProfile, on_delete=models.CASCADE, related_name="status_changes")
    status = models.CharField(max_length=10, choices=AgentStatus.choices)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["agent", "at"]
        indexes = [models.Index(fields=["agent", "at"]), models.Index(fields=["at"])]

    def __str__(self):
        return f"{self.agent}: {self.get_status_display()} at {self.at:%Y-%m-%d %H:%M:%S}"
