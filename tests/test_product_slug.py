"""A product's slug keys the gate's balance items (`PRODUCT#<slug>`) and tokens' scope, so it is
fixed once any customer holds credits of the product (issue 12, finding 1).

The attack it stops: spend at the gate, rename the slug, and the mirror starts a fresh item under
the new slug from Postgres' older usage while the old item's unsynced usage is lost: 5 credits
allowed 8 calls.
"""

import io

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse

from ledger.models import Balance, Product
from ledger.services import credits_grant
from tests.conftest import admin_form_data
from tests.test_gate import call, effect, token_for

REFUSED = "The slug of weather cannot change: customers hold credits of it"


def product_form(client, product: Product, **changes) -> dict:
    """The admin change form of `product` as a browser posts it back, its inlines unchanged, with `changes`."""
    return admin_form_data(client, reverse("admin:ledger_product_change", args=[product.pk])) | changes


def test_renaming_a_sold_product_in_admin_is_refused_and_the_gate_still_stops_at_what_was_granted(
    gate, mirror, alice, staff, products, client, committed
):
    weather = products["weather"]
    with committed():
        credits_grant(customer=alice, product=weather, amount=5)
    token = token_for(alice)
    assert [effect(call(gate, token)) for _ in range(3)] == ["Allow"] * 3  # spent at the gate, not synced yet

    client.force_login(staff)
    with committed():
        response = client.post(
            reverse("admin:ledger_product_change", args=[weather.pk]), product_form(client, weather, slug="weather-v2")
        )

    assert response.status_code == 200  # the form again, with the error under the slug
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["slug"] and errors["slug"][0].startswith(REFUSED)
    assert REFUSED in response.content.decode()
    weather.refresh_from_db()
    assert weather.slug == "weather"
    assert mirror.balance(alice, weather)["used"] == 3

    # Whatever the attacker now asks a token for, the product is still `weather`: 2 more calls, then no.
    token = token_for(alice, scope=weather.slug)
    answers = [call(gate, token) for _ in range(3)]
    assert [effect(a) for a in answers] == ["Allow", "Allow", "Deny"]
    assert answers[2]["context"] == {"reason": "credits_exhausted"}

    call_command("sync_usage", stdout=io.StringIO(), stderr=io.StringIO())
    balance = Balance.objects.get(customer=alice, product=weather)
    assert (balance.granted, balance.used, balance.remaining) == (5, 5, 0)


def test_a_slug_change_is_refused_by_the_model_whatever_path_saves_it(alice, products):
    weather = products["weather"]
    credits_grant(customer=alice, product=weather, amount=5)

    weather.slug = "weather-v2"
    with pytest.raises(ValidationError, match=REFUSED):
        weather.save()
    with pytest.raises(ValidationError, match=REFUSED):
        weather.full_clean()

    assert list(Product.objects.values_list("slug", flat=True)) == ["maps", "weather"]


def test_a_product_nobody_holds_credits_of_can_still_be_renamed(staff, products, client, mirror, committed):
    maps = products["maps"]
    client.force_login(staff)
    with committed():
        response = client.post(
            reverse("admin:ledger_product_change", args=[maps.pk]), product_form(client, maps, slug="atlas")
        )

    assert response.status_code == 302
    maps.refresh_from_db()
    assert maps.slug == "atlas"
    assert mirror.route("maps000001")["product"] == "atlas"  # the gate routes its API to the new slug


def test_the_rest_of_a_sold_product_still_changes_in_admin(alice, staff, products, client):
    weather = products["weather"]
    credits_grant(customer=alice, product=weather, amount=5)
    client.force_login(staff)

    response = client.post(
        reverse("admin:ledger_product_change", args=[weather.pk]), product_form(client, weather, name="Weather API v2")
    )

    assert response.status_code == 302
    weather.refresh_from_db()
    assert (weather.slug, weather.name) == ("weather", "Weather API v2")
