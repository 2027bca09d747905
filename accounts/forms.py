from django import forms


class CustomerEmailForm(forms.Form):
    email = forms.EmailField(
        label="New email",
        max_length=254,
        help_text="Changes both the address purchases are matched by and the one the customer logs in with.",
    )


class ApiKeyForm(forms.Form):
    """The portal's "Create an API key": a label, and optionally fewer products than all of them."""

    name = forms.CharField(label="Name", max_length=80, required=False, help_text="To tell your keys apart.")
    products = forms.MultipleChoiceField(
        label="Products",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every product you have, now and later.",
    )

    def __init__(self, *args, products: list[tuple[str, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["products"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = products
