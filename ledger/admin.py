from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import ValidationError
from django.db.models import Prefetch
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from creditportal.paginator import EstimatedCountPaginator
from ledger import admin_customer  # noqa: F401 - the customer page's ledger side (registers it)
from ledger.forms import ProductAdminForm, PurchaseApplyForm
from ledger.models import (
    Balance,
    DriftCheck,
    LedgerEntry,
    MirrorOutbox,
    Product,
    ProductApi,
    ProductSku,
    ProductVariant,
    Purchase,
)
from ledger.overview.exports import CsvExportMixin
from ledger.overview.selectors import LOW_PERCENT, balances_running_low
from ledger.route_prices import route_prices_lines
from ledger.services import mirror_outbox_add, purchase_apply, purchase_email_resend
from ledger.store.admin import RefundLineInline, set_buyer

RESEND_WELCOME_LABEL = "Resend welcome email (issues a NEW secret; the old one stops working)"
RESEND_CREDITS_ADDED_LABEL = "Resend “credits added” email"
REASON_CHARS = 60  # of a ledger entry's reason in the list


class ProductApiInline(admin.TabularInline):
    model = ProductApi
    extra = 1


class ProductSkuInline(admin.TabularInline):
    model = ProductSku
    extra = 1
    fields = ["sku", "credits_per_unit"]


class ProductVariantInline(admin.TabularInline):
    model = ProductVariant
    extra = 1
    fields = ["variant_id", "credits_per_unit"]


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    """Products are edited here as well as by `upsert_product`: each edit the gate sees is
    handed to the mirror's outbox in the admin's transaction (written after it commits)."""

    form = ProductAdminForm
    list_display = ["slug", "name", "active", "cost_per_call", "route_prices", "api_ids", "skus"]
    list_filter = ["active", "refund_failed_calls"]
    search_fields = ["slug", "name", "skus__sku", "=variants__variant_id", "apis__api_id"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [ProductApiInline, ProductSkuInline, ProductVariantInline]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                Prefetch("apis", queryset=ProductApi.objects.order_by("api_id")),
                Prefetch("skus", queryset=ProductSku.objects.order_by("sku")),
                Prefetch("variants", queryset=ProductVariant.objects.order_by("variant_id")),
            )
        )

    def save_model(self, request, obj: Product, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change:  # cost, on sale and the version are in every balance item of the product, the version in its routes
            mirror_outbox_add(products=[obj])

    def save_formset(self, request, form, formset, change: bool) -> None:
        if formset.model is not ProductApi:
            super().save_formset(request, form, formset, change)
            return
        # API ids as they were (an edited or deleted one leaves its old route to delete) and as they are.
        before = {f.initial["api_id"] for f in formset.initial_forms if f.has_changed()}
        super().save_formset(request, form, formset, change)
        after = {row.api_id for row in formset.new_objects} | {row.api_id for row, _ in formset.changed_objects}
        mirror_outbox_add(api_ids=before | after)

    def delete_model(self, request, obj: Product) -> None:
        mirror_outbox_add(api_ids=obj.apis.values_list("api_id", flat=True))  # deleted with it: their routes go
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        mirror_outbox_add(api_ids=ProductApi.objects.filter(product__in=queryset).values_list("api_id", flat=True))
        super().delete_queryset(request, queryset)

    @admin.display(description="route prices")
    def route_prices(self, product: Product) -> str:
        return ", ".join(route_prices_lines(product.routes)) or "-"

    @admin.display(description="API ids")
    def api_ids(self, product: Product) -> str:
        return ", ".join(api.api_id for api in product.apis.all())

    @admin.display(description="SKUs")
    def skus(self, product: Product) -> str:
        """SKUs and Shopify variants, a pack as `SKU:credits per unit`."""
        return ", ".join([*(str(sku) for sku in product.skus.all()), *(f"variant {v}" for v in product.variants.all())])


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that only services write: staff look, nobody edits or deletes."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class RunningLowFilter(admin.SimpleListFilter):
    """The overview's "within 10% of running out": the balances behind its count."""

    title = "credits left"
    parameter_name = "running_low"

    def lookups(self, request, model_admin):
        return [("yes", f"{LOW_PERCENT}% or less of what was granted")]

    def queryset(self, request, queryset):
        return balances_running_low(queryset) if self.value() == "yes" else queryset


@admin.register(Balance)
class BalanceAdmin(ReadOnlyAdmin):
    list_display = ["customer", "product", "granted", "used", "remaining", "updated"]
    list_filter = ["product", RunningLowFilter]
    list_select_related = ["customer", "product"]
    search_fields = ["customer__email", "=customer__public_id"]
    # Newest customers first, in the order of the (customer, product) unique index:
    # ordering by the customer's email would join and sort every balance (0.5 s at 130k).
    ordering = ["-customer_id", "-product_id"]
    sortable_by = ["customer", "product", "granted", "used", "remaining", "updated"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator


def _when(moment) -> str:
    """A list's date and time, short: 2026-03-05 14:07 (the full one is on the row's page)."""
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M")


class ListMedia:
    # Narrow columns for a 1280 px screen: emails and long reasons wrap or are cut (ledger/static/ledger/admin.css).
    css = {"all": ["ledger/admin.css"]}


@admin.register(LedgerEntry)
class LedgerEntryAdmin(CsvExportMixin, ReadOnlyAdmin):
    # At 1280 px every column shows (tests/test_admin_browser.py): short dates, the reason cut
    # to a line (whole on hover and on the entry's page), who made it by name.
    list_display = ["when", "customer", "product", "kind", "amount", "reason_short", "created_by_name", "purchase_link"]
    list_filter = ["kind", "product"]
    list_select_related = ["customer", "product", "created_by", "purchase"]
    # A failed call credited back: its entry names the gateway's request id (reason: status and route).
    search_fields = ["customer__email", "=customer__public_id", "reason", "=request_id"]
    readonly_fields = ["request_id"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    Media = ListMedia
    csv_name = "ledger-entries"
    csv_columns = [
        ("id", lambda e: e.pk),
        ("created", lambda e: e.created),
        ("customer", lambda e: e.customer.public_id),
        ("customer email", lambda e: e.customer.email),
        ("product", lambda e: e.product.slug),
        ("kind", lambda e: e.kind),
        ("amount", lambda e: e.amount),
        ("reason", lambda e: e.reason),
        ("created by", lambda e: e.created_by.email if e.created_by else None),
        ("purchase order", lambda e: e.purchase.order_id if e.purchase else None),
        ("purchase line", lambda e: e.purchase.line_id if e.purchase else None),
    ]

    @admin.display(description="created", ordering="created")
    def when(self, entry: LedgerEntry) -> str:
        return _when(entry.created)

    @admin.display(description="reason")
    def reason_short(self, entry: LedgerEntry) -> str:
        if not entry.reason:
            return "-"
        return format_html('<span title="{}">{}</span>', entry.reason, Truncator(entry.reason).chars(REASON_CHARS))

    @admin.display(description="created by", ordering="created_by")
    def created_by_name(self, entry: LedgerEntry) -> str:
        return entry.created_by.get_full_name() if entry.created_by else "-"

    @admin.display(description="purchase", ordering="purchase")
    def purchase_link(self, entry: LedgerEntry) -> str:
        if entry.purchase is None:
            return "-"
        url = reverse("admin:ledger_purchase_change", args=[entry.purchase_id])
        return format_html('<a href="{}" title="{}">{}</a>', url, entry.purchase, entry.purchase.order_id)


@admin.register(Purchase)
class PurchaseAdmin(CsvExportMixin, ReadOnlyAdmin):
    """Order lines as the store sent them. Only services write them; staff apply
    unmatched ones to a product and resend emails, through the actions."""

    # At 1280 px every column shows (tests/test_admin_browser.py): one source so far (a filter
    # says which), the line id under its order, short dates, emails that wrap.
    list_display = ["when", "order", "buyer", "product", "quantity", "status", "email_state"]
    list_filter = ["status", "email_status", "source", "product"]
    list_select_related = ["customer", "product"]
    search_fields = ["=order_id", "email", "customer__email", "=customer__public_id"]
    ordering = ["-received", "-id"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    actions = ["apply_to_product", set_buyer, "resend_welcome_email", "resend_credits_added_email"]
    fields = [
        "source", "order_id", "line_id", "status", "email", "name", "product_ref", "quantity", "credits_per_unit",
        "credits_refunded", "price", "currency", "product", "customer", "received", "applied", "created_customer", "remaining_after",
        "email_status", "email_error", "emailed", "payload", "ledger_entries",
    ]  # fmt: skip
    readonly_fields = fields
    inlines = [RefundLineInline]

    Media = ListMedia
    csv_name = "purchases"
    csv_columns = [
        ("id", lambda p: p.pk),
        ("received", lambda p: p.received),
        ("source", lambda p: p.source),
        ("order", lambda p: p.order_id),
        ("line", lambda p: p.line_id),
        ("status", lambda p: p.status),
        ("email", lambda p: p.email),
        ("name", lambda p: p.name),
        ("product as sent", lambda p: p.product_ref),
        ("units", lambda p: p.quantity),
        ("credits per unit", lambda p: p.credits_per_unit),
        ("unit price", lambda p: p.price),
        ("currency", lambda p: p.currency),
        ("product", lambda p: p.product.slug if p.product else None),
        ("customer", lambda p: p.customer.public_id if p.customer else None),
        ("applied", lambda p: p.applied),
        ("email status", lambda p: p.email_status),
    ]

    @admin.display(description="received", ordering="received")
    def when(self, purchase: Purchase) -> str:
        return _when(purchase.received)

    @admin.display(description="order", ordering="order_id")
    def order(self, purchase: Purchase) -> str:
        if not purchase.line_id:
            return purchase.order_id
        line = purchase.line_id if len(purchase.line_id) <= 12 else f"…{purchase.line_id[-10:]}"
        return format_html('{}<small title="line {}">line {}</small>', purchase.order_id, purchase.line_id, line)

    def has_apply_permission(self, request: HttpRequest) -> bool:
        """Apply and resend are what "change" means for a purchase (the form itself stays read-only)."""
        return request.user.has_perm("ledger.change_purchase")

    @admin.display(description="customer", ordering="email")
    def buyer(self, purchase: Purchase) -> str:
        if purchase.customer is None:
            return format_html("{} <em>(no customer yet)</em>", purchase.email)
        url = reverse("admin:accounts_customer_change", args=[purchase.customer_id])
        return format_html('<a href="{}">{}</a>', url, purchase.customer)

    @admin.display(description="email", ordering="email_status")
    def email_state(self, purchase: Purchase) -> str:
        if purchase.email_status == Purchase.EmailStatus.FAILED:
            return format_html(
                '<span title="{}" class="cp-failed">Failed: {}</span>',
                purchase.email_error,
                Truncator(purchase.email_error).chars(60),
            )
        return purchase.get_email_status_display()

    @admin.display(description="ledger entries")
    def ledger_entries(self, purchase: Purchase) -> str:
        url = reverse("admin:ledger_ledgerentry_changelist") + f"?purchase__id__exact={purchase.pk}"
        return format_html('<a href="{}">Ledger entries of this purchase</a>', url)

    @admin.action(description="Apply selected unmatched purchases to a product…", permissions=["apply"])
    def apply_to_product(self, request: HttpRequest, queryset):
        unmatched = list(
            queryset.filter(status__in=[Purchase.Status.UNMATCHED, Purchase.Status.OTHER]).order_by("received", "pk")
        )
        if not unmatched:
            self.message_user(
                request, "None of the selected purchases is unmatched: nothing to apply.", messages.WARNING
            )
            return None
        form = PurchaseApplyForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            product = form.cleaned_data["product"]
            for purchase in unmatched:
                try:
                    purchase = purchase_apply(purchase=purchase, product=product, by=request.user)
                except ValidationError as e:
                    self.message_user(request, " ".join(e.messages), messages.ERROR)
                    continue
                self.log_change(request, purchase, f"Applied to product {product.slug}.")
                purchase.refresh_from_db(fields=["email_status"])
                self.message_user(
                    request,
                    f"Purchase {purchase}: {purchase.credits} {product.slug} credits granted to {purchase.customer}; "
                    f"email {purchase.get_email_status_display().lower()}.",
                    messages.SUCCESS if purchase.email_status == Purchase.EmailStatus.SENT else messages.WARNING,
                )
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Apply purchases to a product",
            "purchases": unmatched,
            "form": form,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/ledger/purchase/apply.html", context)

    @admin.action(description=RESEND_WELCOME_LABEL, permissions=["apply"])
    def resend_welcome_email(self, request: HttpRequest, queryset) -> None:
        self._resend(request, queryset.filter(created_customer=True), "welcome email with a new secret")

    @admin.action(description=RESEND_CREDITS_ADDED_LABEL, permissions=["apply"])
    def resend_credits_added_email(self, request: HttpRequest, queryset) -> None:
        chosen = queryset.filter(status=Purchase.Status.APPLIED, created_customer=False)
        self._resend(request, chosen, "“credits added” email")

    def _resend(self, request: HttpRequest, queryset, what: str) -> None:
        purchases = list(queryset.order_by("received", "pk"))
        if not purchases:
            self.message_user(request, f"None of the selected purchases has a {what} to resend.", messages.WARNING)
            return
        for purchase in purchases:
            try:
                purchase = purchase_email_resend(purchase=purchase, by=request.user)
            except ValidationError as e:
                self.message_user(request, " ".join(e.messages), messages.ERROR)
                continue
            purchase.refresh_from_db(fields=["email_status", "email_error"])
            self.log_change(request, purchase, f"Resent the {what}: {purchase.get_email_status_display().lower()}.")
            if purchase.email_status == Purchase.EmailStatus.SENT:
                message, level = f"{what} sent to {purchase.customer}.", messages.SUCCESS
            elif purchase.email_status == Purchase.EmailStatus.FAILED:
                message, level = f"the {what} failed again: {purchase.email_error}", messages.ERROR
            else:  # sent once the surrounding transaction commits
                message, level = f"{what} queued for {purchase.customer}.", messages.INFO
            self.message_user(request, f"Purchase {purchase}: {message}", level)


@admin.register(MirrorOutbox)
class MirrorOutboxAdmin(ReadOnlyAdmin):
    """Mirror writes not done yet: Postgres has the change, the gate does not (the next sync_usage run writes them)."""

    list_display = ["created", "scope", "ref", "attempts", "error"]
    list_filter = ["scope"]
    search_fields = ["=ref"]


@admin.register(DriftCheck)
class DriftCheckAdmin(ReadOnlyAdmin):
    """What each `sync_mirror --check` found (the overview shows the last)."""

    list_display = ["ran", "result", "differences"]
    list_filter = ["result"]
    readonly_fields = ["ran", "result", "differences", "detail"]
