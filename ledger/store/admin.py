"""The store's records in admin: refunds and cancellations with what each took back, webhook deliveries,
and each purchase's refunds (an inline on the purchase's page, ledger/admin.py)."""

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from accounts.models import User
from ledger.forms import PurchaseBuyerForm
from ledger.models import Purchase
from ledger.overview.selectors import refunds_found_spent
from ledger.store.models import RefundLine, StoreRefund, StoreWebhook
from ledger.store.staff import purchase_buyer_set


class _ReadOnly:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class RefundLineInline(_ReadOnly, admin.TabularInline):
    """On a purchase's page: every refund of the line, what it took back and what was already spent."""

    model = RefundLine
    fk_name = "purchase"
    extra = 0
    verbose_name = "refund"
    fields = ["refund_link", "quantity", "credits_claimed", "credits_taken", "credits_spent"]
    readonly_fields = ["refund_link", "quantity", "credits_claimed", "credits_taken", "credits_spent"]

    @admin.display(description="refund")
    def refund_link(self, line: RefundLine) -> str:
        url = reverse("admin:ledger_storerefund_change", args=[line.refund_id])
        return format_html('<a href="{}">{}</a>', url, line.refund)


class RefundLinesOfRefund(_ReadOnly, admin.TabularInline):
    model = RefundLine
    fk_name = "refund"
    extra = 0
    verbose_name = "line"
    fields = ["purchase", "quantity", "credits_claimed", "credits_taken", "credits_spent", "entry"]
    readonly_fields = ["purchase", "quantity", "credits_claimed", "credits_taken", "credits_spent", "entry"]


class FoundSpentFilter(admin.SimpleListFilter):
    """The overview's "refunds that found credits already spent"."""

    title = "credits already spent"
    parameter_name = "found_spent"

    def lookups(self, request, model_admin):
        return [("yes", "found some already spent")]

    def queryset(self, request, queryset):
        return refunds_found_spent(queryset) if self.value() == "yes" else queryset


@admin.register(StoreRefund)
class StoreRefundAdmin(_ReadOnly, admin.ModelAdmin):
    actions = None  # only the refund services write these
    list_display = ["received", "kind", "refund_id", "order_id", "taken", "spent", "email_status"]
    list_filter = ["kind", "email_status", FoundSpentFilter]
    search_fields = ["=order_id", "=refund_id"]
    fields = ["kind", "refund_id", "order_id", "reason", "received", "email_status", "email_error", "payload"]
    readonly_fields = ["kind", "refund_id", "order_id", "reason", "received", "email_status", "email_error", "payload"]
    inlines = [RefundLinesOfRefund]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("lines")

    @admin.display(description="credits taken back")
    def taken(self, refund: StoreRefund) -> int:
        return sum(line.credits_taken for line in refund.lines.all())

    @admin.display(description="already spent")
    def spent(self, refund: StoreRefund) -> int:
        return sum(line.credits_spent for line in refund.lines.all())


@admin.register(StoreWebhook)
class StoreWebhookAdmin(_ReadOnly, admin.ModelAdmin):
    actions = None
    list_display = ["received", "topic", "webhook_id", "shop", "outcome"]
    list_filter = ["topic"]
    search_fields = ["=webhook_id"]
    fields = ["webhook_id", "topic", "shop", "received", "outcome", "payload"]
    readonly_fields = ["webhook_id", "topic", "shop", "received", "outcome", "payload"]


@admin.action(description="Set the buyer of orders without an email, and grant…", permissions=["apply"])
def set_buyer(modeladmin, request: HttpRequest, queryset):
    """An action of the purchases list (ledger/admin.py): the lines of orders that came without any
    email get the buyer's email staff give, and their credits."""
    waiting = list(queryset.filter(status=Purchase.Status.NO_EMAIL).order_by("received", "pk"))
    if not waiting:
        modeladmin.message_user(request, "None of the selected purchases waits for a buyer email.", messages.WARNING)
        return None
    form = PurchaseBuyerForm(request.POST if "set_buyer" in request.POST else None)
    staff = request.user
    if form.is_valid() and isinstance(staff, User):  # (the admin lets only logged-in staff this far)
        for order_id in dict.fromkeys(p.order_id for p in waiting):
            purchase = next(p for p in waiting if p.order_id == order_id)
            try:
                granted = purchase_buyer_set(purchase=purchase, email=form.cleaned_data["email"], by=staff)
            except ValidationError as e:
                modeladmin.message_user(request, " ".join(e.messages), messages.ERROR)
                continue
            for line in granted:
                modeladmin.log_change(request, line, f"Buyer set to {line.email}; granted.")
            modeladmin.message_user(
                request,
                f"Order {order_id}: {len(granted)} lines granted to {form.cleaned_data['email']}.",
                messages.SUCCESS,
            )
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "opts": modeladmin.opts,
        "title": "Set the buyer",
        "purchases": waiting,
        "form": form,
        "action_checkbox_name": ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/ledger/purchase/buyer.html", context)
