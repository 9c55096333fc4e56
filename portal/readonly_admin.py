"""Admin pages for history: rows that are viewed and searched, never added, changed or deleted
by hand (chats, calls, CRM records, the consent ledger). Each app's admin uses these."""
from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """History: viewed, never added, changed or deleted here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False
