from typing import Any

from django import forms

from ledger.models import Product
from ledger.route_prices import route_prices_lines, route_prices_parse


class CreditsAdjustForm(forms.Form):
    """Staff's correction of a balance. Every field is required (and rendered `required`); each
    error, the service's included (`service_error_add`), is shown under the field it is about."""

    # A placeholder first option, so that the select can be `required` (HTML needs one) and
    # nobody adjusts whichever product happens to sort first.
    product = forms.ModelChoiceField(queryset=Product.objects.all(), empty_label="Pick a product")
    amount = forms.IntegerField(
        label="Credits",
        help_text="Signed: 50 adds fifty credits, -20 takes twenty away.",
        min_value=-10_000_000,
        max_value=10_000_000,
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Required. Kept in the ledger with your name.",
        max_length=1000,
    )

    def clean_amount(self) -> int:
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("Enter a number of credits other than 0.")
        return amount

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Say why: an adjustment needs a reason.")
        return reason

    # ledger.services.credits_adjust's error codes, and the field each one is about.
    SERVICE_ERROR_FIELDS = {"below_used": "amount", "zero": "amount", "reason_required": "reason"}

    def service_error_add(self, error: forms.ValidationError) -> None:
        """Show an error of credits_adjust under its field (or above the form if it is about none)."""
        self.add_error(self.SERVICE_ERROR_FIELDS.get(error.code), error)


class PurchaseApplyForm(forms.Form):
    product = forms.ModelChoiceField(
        queryset=Product.objects.order_by("-active", "slug"),
        empty_label="Pick the product these credits are for",
        help_text="The credits are granted now, once; a new buyer gets the welcome email with credentials.",
    )


class PurchaseBuyerForm(forms.Form):
    email = forms.EmailField(
        label="Buyer's email",
        help_text="The order's lines waiting for a buyer are granted to this customer now, once (a new one gets the welcome email).",
    )


class ProductAdminForm(forms.ModelForm):
    """The product's admin form; its route prices as lines of `METHOD /path=COST`, as upsert_product takes them."""

    routes = forms.CharField(
        label="Route prices",
        required=False,
        widget=forms.Textarea(attrs={"rows": 5, "cols": 60, "placeholder": "POST /jobs=10\nGET /health=0"}),
        help_text=(
            "One route a line, METHOD /path=COST: the method or ANY, the path as API Gateway writes it "
            "({id}, and last {proxy+}). The most specific match wins; a call no route matches costs the "
            "cost per call. 0 is free (the caller still needs a valid token and a balance)."
        ),
    )

    class Meta:
        model = Product
        fields = ["slug", "name", "active", "cost_per_call", "routes", "refund_failed_calls", "refund_statuses"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial["routes"] = "\n".join(route_prices_lines(self.instance.routes or {}))

    def clean_routes(self) -> dict[str, int]:
        return route_prices_parse(self.cleaned_data["routes"].splitlines())
