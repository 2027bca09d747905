from axes.admin import AccessAttemptAdmin as AxesAccessAttemptAdmin
from axes.models import AccessAttempt
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from accounts.forms import CustomerEmailForm
from accounts.models import ApiKey, Credential, Customer, User
from accounts.services import (
    api_key_revoke,
    customer_email_change,
    customer_reactivate,
    customer_suspend,
    user_deactivate,
)
from creditportal.paginator import EstimatedCountPaginator
from ledger.services import mirror_outbox_add


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "name", "is_staff", "is_active", "last_login"]
    search_fields = ["email", "name"]
    paginator = EstimatedCountPaginator
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Personal info", {"fields": ["name"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Important dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]

    def get_readonly_fields(self, request, obj=None):
        # A customer's login keeps the customer's email: it changes on the customer's page
        # (customer_email_change), both at once, or purchases and logins would drift apart.
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "email"] if obj is not None and Customer.objects.filter(user=obj).exists() else fields

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if "is_active" in form.base_fields:
            form.base_fields["is_active"].help_text = (
                "Unticked: no more logins and, for a customer's login, the customer is suspended too "
                "(its tokens are refused, the gate denies its next call). Ticking it again does not "
                "reactivate the customer: do that on the customer's page."
            )
        return form

    def save_model(self, request, obj, form, change):
        deactivated = change and "is_active" in form.changed_data and not obj.is_active
        super().save_model(request, obj, form, change)
        if deactivated:
            user_deactivate(user=obj)
            if Customer.objects.filter(user=obj).exists():
                self.message_user(
                    request, f"{obj}'s customer is suspended too: API calls are denied.", messages.WARNING
                )


class CredentialInline(admin.TabularInline):
    model = Credential
    fields = ["client_id", "masked_secret", "created", "rotated_at", "revoked_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    fields = ["public_id", "name", "masked", "products", "created_by", "created", "revoked_at"]
    readonly_fields = ["public_id", "name", "masked", "products", "created_by", "created", "revoked_at"]
    extra = 0
    can_delete = False
    verbose_name_plural = "API keys (revoke them under API keys)"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Staff see every key (never the key: only its hash is kept) and can revoke one, e.g. a leaked key."""

    list_display = ["public_id", "customer", "name", "masked", "created", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["=public_id", "customer__email", "=customer__public_id"]
    list_select_related = ["customer"]
    ordering = ["-created"]
    fields = ["public_id", "customer", "name", "masked", "products", "created_by", "created", "revoked_at"]
    readonly_fields = ["public_id", "customer", "name", "masked", "products", "created_by", "created", "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # keys are made by their customers, shown to them once

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: the gate must hear of it

    @admin.action(description="Revoke selected API keys (refused from their next call)", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset) -> None:
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key)
            revoked += 1
        self.message_user(request, f"{revoked} API key(s) revoked.", messages.SUCCESS)

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.change_apikey")


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    class Media:
        css = {"all": ["accounts/admin.css"]}  # classes, not style attributes: the CSP allows none

    list_display = ["email", "name", "public_id", "status", "created"]
    list_filter = ["status"]  # ledger/admin_customer.py adds the product filter
    search_fields = ["email", "name", "=public_id"]
    ordering = ["-created"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    # ledger/admin_customer.py adds ledger's side: balances, the ledger history, "Adjust credits".
    fields = ["email", "name", "public_id", "status", "created", "user"]
    # The email changes through "Change email" (customer_email_change), with the login's.
    readonly_fields = ["email", "public_id", "status", "created", "user"]
    inlines = [CredentialInline, ApiKeyInline]
    actions = ["suspend", "reactivate"]

    def has_add_permission(self, request):
        # Customers come from purchases, which also give them credentials.
        return False

    def save_model(self, request, obj: Customer, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        mirror_outbox_add(customers=[obj])  # the save bumped the version its mirror items carry

    def has_delete_permission(self, request, obj=None):
        # Their ledger is append-only; suspend instead.
        return False

    def get_urls(self):
        own = [
            path("<int:object_id>/email/", self.admin_site.admin_view(self.email_view), name="accounts_customer_email"),
            path(
                "<int:object_id>/status/",
                self.admin_site.admin_view(require_POST(self.status_view)),
                name="accounts_customer_status",
            ),
        ]
        return own + super().get_urls()

    # Suspending and reactivating change the customer: staff who may only view get neither
    # (an action without `permissions` is offered to anyone who may see the list).
    @admin.action(description="Suspend selected customers (their next call is denied)", permissions=["change"])
    def suspend(self, request: HttpRequest, queryset) -> None:
        for customer in queryset.filter(status=Customer.Status.ACTIVE):
            customer_suspend(customer=customer)
        self.message_user(request, "Suspended.", messages.SUCCESS)

    @admin.action(description="Reactivate selected customers", permissions=["change"])
    def reactivate(self, request: HttpRequest, queryset) -> None:
        for customer in queryset.filter(status=Customer.Status.SUSPENDED):
            customer_reactivate(customer=customer)
        self.message_user(request, "Reactivated.", messages.SUCCESS)

    def status_view(self, request: HttpRequest, object_id: int):
        customer = get_object_or_404(Customer, pk=object_id)
        if not self.has_change_permission(request, customer):
            raise PermissionDenied
        if request.POST.get("status") == Customer.Status.SUSPENDED:
            customer_suspend(customer=customer)
            self.message_user(request, f"{customer} is suspended: their next call is denied.", messages.SUCCESS)
        else:
            customer_reactivate(customer=customer)
            self.message_user(request, f"{customer} is active again.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:accounts_customer_change", args=[customer.pk]))

    def email_view(self, request: HttpRequest, object_id: int):
        customer = get_object_or_404(Customer, pk=object_id)
        if not self.has_change_permission(request, customer):
            raise PermissionDenied
        form = CustomerEmailForm(request.POST or None, initial={"email": customer.email})
        if request.method == "POST" and form.is_valid():
            old = customer.email
            try:
                customer = customer_email_change(customer=customer, email=form.cleaned_data["email"])
            except ValidationError as e:
                form.add_error("email", e)
            else:
                self.log_change(request, customer, f"Email changed from {old} to {customer.email}.")
                self.message_user(request, f"{old} is now {customer.email}, for purchases and login.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:accounts_customer_change", args=[customer.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": customer,
            "title": f"Change the email of {customer}",
            "form": form,
        }
        return TemplateResponse(request, "admin/accounts/customer/email.html", context)


# django-axes' own admin offers "Clean up expired attempts" (it deletes rows) to anyone who
# may view the attempts, and the action fails outside a login request: axes reads the
# request's `axes_attempt_time`, which only its login handling sets. Same admin, with both fixed.
admin.site.unregister(AccessAttempt)


@admin.register(AccessAttempt)
class AccessAttemptAdmin(AxesAccessAttemptAdmin):
    @admin.action(description="Clean up expired attempts", permissions=["delete"])
    def cleanup_expired_attempts(self, request: HttpRequest, queryset) -> None:
        request.axes_attempt_time = None  # "expired" counts from now
        super().cleanup_expired_attempts(request, queryset)
