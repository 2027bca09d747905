"""The customer's admin page, ledger's side of it: balances, the product filter, the ledger history
and the "Adjust credits" form. accounts/admin.py owns the page (the customer, its credentials and
status); this subclass adds what is ledger's, so accounts reads ledger only through ledger.selectors
and writes it only through ledger.services. Registered by ledger/admin.py in place of accounts'."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Exists, OuterRef
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from accounts import admin as accounts_admin
from accounts.models import Customer
from ledger.forms import CreditsAdjustForm
from ledger.models import Balance, LedgerEntry, Product
from ledger.services import credits_adjust

LEDGER_HISTORY_ROWS = 50


class ProductListFilter(admin.SimpleListFilter):
    title = "product"
    parameter_name = "product"

    def lookups(self, request, model_admin):
        return Product.objects.values_list("slug", "name")

    def queryset(self, request, queryset):
        if self.value():
            # EXISTS, not a join + DISTINCT: the page is walked in the list's order
            # and each customer checked by the (customer, product) unique index.
            has_it = Balance.objects.filter(customer=OuterRef("pk"), product__slug=self.value())
            return queryset.filter(Exists(has_it))
        return queryset


class BalanceInline(admin.TabularInline):
    model = Balance
    fields = ["product", "granted", "used", "remaining", "updated"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("product")


class CustomerAdmin(accounts_admin.CustomerAdmin):
    list_filter = [*accounts_admin.CustomerAdmin.list_filter, ProductListFilter]
    fields = [*accounts_admin.CustomerAdmin.fields, "ledger_history"]
    readonly_fields = [*accounts_admin.CustomerAdmin.readonly_fields, "ledger_history"]
    inlines = [BalanceInline, *accounts_admin.CustomerAdmin.inlines]

    def get_urls(self):
        adjust = path(
            "<int:object_id>/adjust/", self.admin_site.admin_view(self.adjust_view), name="accounts_customer_adjust"
        )
        return [adjust, *super().get_urls()]

    @admin.display(description="Ledger history (newest first)")
    def ledger_history(self, customer: Customer) -> str:
        entries = (
            LedgerEntry.objects.filter(customer=customer)
            .select_related("product", "created_by")
            .order_by("-created", "-id")[:LEDGER_HISTORY_ROWS]
        )
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class='cp-number'>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    e.created.strftime("%Y-%m-%d %H:%M:%S"),
                    e.product.slug,
                    e.get_kind_display(),
                    f"{e.amount:+d}",
                    e.reason,
                    e.created_by.get_full_name() if e.created_by else "",
                )
                for e in entries
            ),
        )
        all_url = reverse("admin:ledger_ledgerentry_changelist") + f"?customer__id__exact={customer.pk}"
        return format_html(
            "<table><thead><tr><th>When</th><th>Product</th><th>Kind</th><th>Credits</th><th>Reason</th>"
            "<th>By</th></tr></thead><tbody>{}</tbody></table><p><a href='{}'>All ledger entries of this customer</a></p>",
            rows or format_html("<tr><td colspan='6'>{}</td></tr>", "No entries yet."),
            all_url,
        )

    def adjust_view(self, request: HttpRequest, object_id: int):
        customer = get_object_or_404(Customer, pk=object_id)
        if not self.has_change_permission(request, customer):
            raise PermissionDenied
        form = CreditsAdjustForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                credits_adjust(customer=customer, by=request.user, **form.cleaned_data)
            except ValidationError as e:
                form.service_error_add(e)
            else:
                data = form.cleaned_data
                self.message_user(
                    request, f"{data['amount']:+d} credits of {data['product']} for {customer}.", messages.SUCCESS
                )
                return HttpResponseRedirect(reverse("admin:accounts_customer_change", args=[customer.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": customer,
            "title": f"Adjust credits of {customer}",
            "form": form,
            "balances": customer.balances.select_related("product").order_by("product__slug"),
        }
        return TemplateResponse(request, "admin/accounts/customer/adjust.html", context)


admin.site.unregister(Customer)
admin.site.register(Customer, CustomerAdmin)
