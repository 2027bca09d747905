from django.contrib import admin
from django.db.models import Prefetch

from ledger.models import Balance, LedgerEntry, MirrorPending, Product, ProductApi, ProductSku


class ProductApiInline(admin.TabularInline):
    model = ProductApi
    extra = 1


class ProductSkuInline(admin.TabularInline):
    model = ProductSku
    extra = 1


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "active", "cost_per_call", "api_ids", "skus"]
    list_filter = ["active"]
    search_fields = ["slug", "name", "skus__sku", "apis__api_id"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [ProductApiInline, ProductSkuInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related(
            Prefetch("apis", queryset=ProductApi.objects.order_by("api_id")),
            Prefetch("skus", queryset=ProductSku.objects.order_by("sku")),
        )

    @admin.display(description="API ids")
    def api_ids(self, product: Product) -> str:
        return ", ".join(api.api_id for api in product.apis.all())

    @admin.display(description="SKUs")
    def skus(self, product: Product) -> str:
        return ", ".join(sku.sku for sku in product.skus.all())


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that only services write: staff look, nobody edits or deletes."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Balance)
class BalanceAdmin(ReadOnlyAdmin):
    list_display = ["customer", "product", "granted", "used", "remaining", "updated"]
    list_filter = ["product"]
    list_select_related = ["customer", "product"]
    search_fields = ["customer__email", "=customer__public_id"]
    ordering = ["customer__email", "product__slug"]
    sortable_by = ["customer", "product", "granted", "used", "remaining", "updated"]
    show_full_result_count = False


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["created", "customer", "product", "kind", "amount", "reason", "created_by", "purchase"]
    list_filter = ["kind", "product"]
    list_select_related = ["customer", "product", "created_by", "purchase"]
    search_fields = ["customer__email", "=customer__public_id", "reason"]
    show_full_result_count = False


@admin.register(MirrorPending)
class MirrorPendingAdmin(ReadOnlyAdmin):
    """Mirror writes that failed: Postgres has the change, the gate does not yet (sync_mirror --pending)."""

    list_display = ["item_pk", "item_sk", "error", "created", "updated"]
    search_fields = ["item_pk", "item_sk"]
