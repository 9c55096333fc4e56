from django.db import models


class Text(models.Model):
    message_sid = models.CharField(max_length=64, unique=True)
    from_number = models.CharField(max_length=20)
    to_number = models.CharField(max_length=20)
    body = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
