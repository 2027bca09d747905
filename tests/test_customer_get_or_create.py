"""`customer_get_or_create`: the service that makes a customer (and its login) on a first purchase."""

import pytest

from accounts.models import NAME_MAX_LENGTH, Customer
from accounts.services import customer_get_or_create


@pytest.mark.parametrize(
    "name, kept",
    [
        ("  Nina   Nørgaard ", "Nina Nørgaard"),
        ("Nina\r\nSECURITY NOTICE", "Nina SECURITY NOTICE"),
        ("Nina\tN.\x0b\x0c\x1b[31m", "Nina N. [31m"),
        ("Nina\u2028\u2029N.\x85", "Nina N."),  # Unicode line and paragraph separators, NEL
        ("\u202eanin\u200b", "anin"),  # a right-to-left override and a zero-width space go
        ("مهرداد\u200cی", "مهرداد\u200cی"),  # a zero-width non-joiner is part of the name
        ("x" * 500, "x" * NAME_MAX_LENGTH),
        ("\n\n", ""),
    ],
)
def test_the_name_is_kept_as_one_line_of_printable_text_cut_to_a_length(db, name, kept):
    customer, credential, secret = customer_get_or_create(email="nina@example.com", name=name)

    customer.refresh_from_db()
    assert (customer.name, customer.user.name) == (kept, kept)
    assert credential is not None and secret


def test_a_known_customer_keeps_its_name(alice):
    customer, credential, secret = customer_get_or_create(email="ALICE@example.com", name="Eve\nSECURITY NOTICE")

    assert (customer, credential, secret) == (alice, None, None)
    assert Customer.objects.get().name == "Alice"
