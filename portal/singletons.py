"""One-row settings models (chat, in-call SMS, operation settings)."""
import contextlib
import contextvars

from django.contrib import admin
from django.db import models
from django.http import HttpResponseRedirect
from django.urls import reverse


_cache: contextvars.ContextVar[dict | None] = contextvars.ContextVar("tern_singletons", default=None)


@contextlib.contextmanager
def cached_singletons():
    """Inside the block each settings singleton is read once (DESIGN rule 8: cached per
    request). For one unit of work, like an inbound text or a sweeper run. A singleton saved
    inside the block is read again; a change saved elsewhere applies from the next block."""
    if _cache.get() is not None:
        yield
        return
    token = _cache.set({})
    try:
        yield
    finally:
        _cache.reset(token)


def caching() -> bool:
    """Whether a `cached_singletons()` block is running."""
    return _cache.get() is not None


def cached(key, load):
    """`load()` once per `cached_singletons()` block under `key`, for other configuration read
    the same way (the event webhooks' subscribers); outside a block, every time."""
    cache = _cache.get()
    if cache is None:
        return load()
    if key not in cache:
        cache[key] = load()
    return cache[key]


def known(key) -> bool:
    """Whether the running block has read `key` already (outside a block, never)."""
    cache = _cache.get()
    return cache is not None and key in cache


def forget(key) -> None:
    """Drop `key` from the running block's cache: the next `cached(key, …)` reads again."""
    cache = _cache.get()
    if cache is not None:
        cache.pop(key, None)


def singletons_per_request(get_response):
    """Middleware: every request is one `cached_singletons()` block (an agent's reply, an API
    call, an admin page), so each settings singleton is read at most once per request."""

    def middleware(request):
        with cached_singletons():
            return get_response(request)

    return middleware


class SingletonModel(models.Model):
    """Always row 1: saving never creates a second row, deleting does nothing."""

    singleton_pk = 1

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        self.pk = self.singleton_pk
        super().save(*args, **kwargs)
        cache = _cache.get()
        if cache is not None:
            cache.pop(type(self), None)  # the next load() in this block reads what was saved

    def delete(self, *args, **kwargs):
        return 0, {}

    @classmethod
    def load(cls):
        """The settings row, created with its defaults the first time it is asked for. Inside a
        `cached_singletons()` block, read once per block."""
        cache = _cache.get()
        if cache is not None and cls in cache:
            return cache[cls]
        obj, created = cls.objects.get_or_create(pk=cls.singleton_pk)
        if created:
            # A new instance holds its defaults as written in the model ("08:00" for a
            # TimeField); read the row back so every value has its field's Python type.
            obj.refresh_from_db()
        if cache is not None:
            cache[cls] = obj
        return obj


class SingletonAdmin(admin.ModelAdmin):
    """The list and add pages lead straight to the one row's edit page."""

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def _change_url(self):
        obj = self.model.load()
        opts = self.model._meta
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])

    def changelist_view(self, request, extra_context=None):
        return HttpResponseRedirect(self._change_url())

    def add_view(self, request, form_url="", extra_context=None):
        return HttpResponseRedirect(self._change_url())
