from django import forms

from ledger.models import Product


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
