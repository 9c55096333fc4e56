"""The languages a portal can offer consumers, and a model field holding a list of them."""
from django import forms
from django.core.exceptions import ValidationError
from django.db import models

LANGUAGE_CHOICES = [
    ("en", "English"),
    ("es", "Spanish"),
    ("fr", "French"),
    ("de", "German"),
    ("pt", "Portuguese"),
    ("it", "Italian"),
    ("zh", "Chinese"),
    ("vi", "Vietnamese"),
    ("ko", "Korean"),
    ("ja", "Japanese"),
]
LANGUAGE_CODES = [code for code, _ in LANGUAGE_CHOICES]


def language_name(code: str) -> str:
    return dict(LANGUAGE_CHOICES).get(code, code)


class LanguageListField(models.JSONField):
    """A list of language codes, edited in the admin as checkboxes."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("default", list)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)

    def validate(self, value, model_instance):
        super().validate(value, model_instance)
        unknown = [code for code in value or [] if code not in LANGUAGE_CODES]
        if unknown:
            raise ValidationError(f"Unknown language code(s): {', '.join(unknown)}.")

    def formfield(self, **kwargs):
        return forms.TypedMultipleChoiceField(
            choices=LANGUAGE_CHOICES,
            required=not self.blank,
            widget=forms.CheckboxSelectMultiple,
            label=kwargs.get("label") or self.verbose_name.capitalize(),
            help_text=self.help_text,
        )
