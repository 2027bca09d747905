import pytest
from django.core.management import CommandError, call_command

from ledger.models import Product, ProductApi, ProductSku


def upsert(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("upsert_product", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_running_it_twice_gives_one_product():
    args = ["--slug", "weather", "--name", "Weather API", "--api-id", "a1b2c3", "--sku", "W-100", "--sku", "W-500"]
    assert upsert(*args) == "product weather: saved\n"
    assert upsert(*args) == "product weather: unchanged\n"

    product = Product.objects.get()
    assert (product.slug, product.name, product.cost_per_call, product.active) == ("weather", "Weather API", 1, True)
    assert sorted(product.skus.values_list("sku", flat=True)) == ["W-100", "W-500"]
    assert list(product.apis.values_list("api_id", flat=True)) == ["a1b2c3"]


@pytest.mark.django_db
def test_it_brings_an_existing_product_to_what_is_given():
    upsert("--slug", "weather", "--name", "Weather", "--sku", "W-100", "--sku", "W-500", "--api-id", "old01")
    upsert("--slug", "weather", "--name", "Weather v2", "--sku", "W-500", "--api-id", "new01", "--cost", "3")

    product = Product.objects.get()
    assert (product.name, product.cost_per_call) == ("Weather v2", 3)
    assert list(ProductSku.objects.values_list("sku", flat=True)) == ["W-500"]
    assert list(ProductApi.objects.values_list("api_id", flat=True)) == ["new01"]


@pytest.mark.django_db
def test_it_leaves_skus_alone_when_none_are_given():
    upsert("--slug", "weather", "--name", "Weather", "--sku", "W-100")
    upsert("--slug", "weather", "--name", "Weather", "--cost", "2")
    assert list(ProductSku.objects.values_list("sku", flat=True)) == ["W-100"]


@pytest.mark.django_db
def test_a_sku_of_another_product_is_refused_and_nothing_changes():
    upsert("--slug", "weather", "--name", "Weather", "--sku", "W-100")
    with pytest.raises(CommandError, match="sku W-100 already belongs to another product"):
        upsert("--slug", "maps", "--name", "Maps", "--sku", "W-100")
    assert list(Product.objects.values_list("slug", flat=True)) == ["weather"]


@pytest.mark.django_db
def test_a_bad_slug_is_refused():
    with pytest.raises(CommandError, match="slug"):
        upsert("--slug", "not a slug!", "--name", "X")
    assert not Product.objects.exists()


@pytest.mark.django_db
def test_it_turns_crediting_back_failed_calls_off_or_narrows_the_statuses():
    upsert("--slug", "weather", "--name", "Weather")
    product = Product.objects.get()
    assert (product.refund_failed_calls, product.refund_statuses) == (True, "500-599")  # a new product's

    assert (
        upsert("--slug", "weather", "--name", "Weather", "--refund-statuses", "502-504") == "product weather: saved\n"
    )
    assert upsert("--slug", "weather", "--name", "Weather", "--no-refund-failed-calls") == "product weather: saved\n"
    product.refresh_from_db()
    assert (product.refund_failed_calls, product.refund_statuses) == (False, "502-504")
    assert upsert("--slug", "weather", "--name", "Weather", "--refund-failed-calls") == "product weather: saved\n"
    product.refresh_from_db()
    assert product.refund_failed_calls is True

    with pytest.raises(CommandError, match="only failed calls' statuses, 500-599"):
        upsert("--slug", "weather", "--name", "Weather", "--refund-statuses", "404")
    product.refresh_from_db()
    assert product.refund_statuses == "502-504"
