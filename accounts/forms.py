from django import forms


class CustomerEmailForm(forms.Form):
    email = forms.EmailField(
        label="New email",
        max_length=254,
        help_text="Changes both the address purchases are matched by and the one the customer logs in with.",
    )
