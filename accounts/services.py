"""Writes to customers and credentials. Each change the gate sees (status,
credentials) saves the customer, which bumps `Customer.version` (the counter the
gate's mirror uses to tell a newer state from a late, older one), and records
in the same transaction that the customer's mirror items must be rewritten
(`_mirror_customer`: ledger's outbox, written after commit)."""

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.crypto import salted_hmac

from accounts.models import ApiKey, Credential, Customer, Throttle, User, normalize_email, normalize_name

# Active (unrevoked) credentials a customer may have at once.
MAX_ACTIVE_CREDENTIALS = 5
# Active (unrevoked) API keys a customer may have at once.
MAX_ACTIVE_KEYS = 20


def _mirror_customer(customer: Customer, *, api_keys: list[ApiKey] | None = None) -> None:
    """Record, in the caller's transaction, that the gate must get this customer's items anew
    (and these API keys' own items)."""
    # Imported here, when called: ledger builds on accounts (its purchases make customers
    # through this module), so ledger.services cannot be loaded while this module loads.
    from ledger.services import mirror_outbox_add

    mirror_outbox_add(customers=[customer], api_keys=api_keys or ())


@transaction.atomic
def customer_suspend(*, customer: Customer) -> Customer:
    """Deny every call of this customer from the next one on."""
    customer.status = Customer.Status.SUSPENDED
    customer.save(update_fields=["status"])
    _mirror_customer(customer)
    return customer


@transaction.atomic
def customer_reactivate(*, customer: Customer) -> Customer:
    customer.status = Customer.Status.ACTIVE
    customer.save(update_fields=["status"])
    _mirror_customer(customer)
    return customer


def _api_keys_made_by_revoke(credential: Credential) -> list[ApiKey]:
    """Revoke the live API keys a program made with this credential's tokens (in the caller's transaction):
    a secret rotated or revoked because it leaked must not leave keys behind that still open the APIs."""
    made = list(ApiKey.objects.select_for_update().filter(created_by=credential, revoked_at__isnull=True))
    now = timezone.now()
    for api_key in made:
        api_key.revoked_at = now
    ApiKey.objects.bulk_update(made, ["revoked_at"])
    return made


@transaction.atomic
def credential_create(*, customer: Customer) -> tuple[Credential, str]:
    """A new credential for `customer`, and its secret: the only time the secret is seen.

    At most MAX_ACTIVE_CREDENTIALS are active at once. They are counted under the
    customer's row lock, so concurrent requests take turns: each counts what the
    one before it committed, and none can slip in between a count and an insert.
    """
    Customer.objects.select_for_update().filter(pk=customer.pk).values_list("pk", flat=True).get()
    active = Credential.objects.filter(customer_id=customer.pk, revoked_at__isnull=True).count()
    if active >= MAX_ACTIVE_CREDENTIALS:
        raise ValidationError(
            f"{active} credentials are active already, the most there can be; revoke one before adding another.",
            code="too_many_credentials",
        )
    credential = Credential(customer=customer)
    secret = credential.set_secret()
    credential.save()
    customer.touch()
    _mirror_customer(customer)
    return credential, secret


@transaction.atomic
def credential_rotate(*, credential: Credential) -> str:
    """A new secret for the same client id. The old secret gets no new tokens,
    and tokens it got before are refused by the gate at their next call."""
    credential = Credential.objects.select_for_update().get(pk=credential.pk)
    if credential.is_revoked:
        raise ValidationError("A revoked credential cannot be rotated.", code="revoked")
    secret = credential.set_secret()
    credential.rotated_at = timezone.now()
    credential.save(update_fields=["secret_hash", "secret_last4", "secret_version", "rotated_at"])
    credential.customer.touch()
    _mirror_customer(credential.customer, api_keys=_api_keys_made_by_revoke(credential))
    return secret


@transaction.atomic
def credential_revoke(*, credential: Credential) -> Credential:
    """No more tokens for this client id; its tokens are refused at their next call."""
    credential = Credential.objects.select_for_update().get(pk=credential.pk)
    if not credential.is_revoked:
        credential.revoked_at = timezone.now()
        credential.save(update_fields=["revoked_at"])
        credential.customer.touch()
        _mirror_customer(credential.customer, api_keys=_api_keys_made_by_revoke(credential))
    return credential


def _customer_by_email(email: str) -> Customer | None:
    # Lower(email) is what the unique index is on, so this lookup uses it.
    return Customer.objects.alias(email_ci=Lower("email")).filter(email_ci=email).first()


@transaction.atomic
def customer_get_or_create(*, email: str, name: str = "") -> tuple[Customer, Credential | None, str | None]:
    """The customer buying with `email` (trimmed, case-insensitive), created if new.

    The name is made one line of printable text (`normalize_name`): our emails greet it.
    A new customer gets a login (without a password: the welcome email links to
    setting one) and one credential. Returns (customer, credential, secret): the
    credential and its plain secret only when they were created here, else None.

    Safe under concurrency: two first purchases at once for one email make one
    customer; the second waits on the unique index, then finds the first's.
    """
    email = normalize_email(email)
    name = normalize_name(name)
    customer = _customer_by_email(email)
    if customer is not None:
        return customer, None, None
    try:
        with transaction.atomic():
            user: User | None = User.objects.alias(email_ci=Lower("email")).filter(email_ci=email).first()
            if user is None:
                user = User.objects.create_user(email, None, name=name)
            customer = Customer.objects.create(user=user, email=email, name=name)
    except IntegrityError:
        # Another transaction created this customer and has committed (the insert
        # waited for it); under READ COMMITTED this next query sees its row.
        customer = _customer_by_email(email)
        if customer is None:
            raise
        return customer, None, None
    credential, secret = credential_create(customer=customer)
    return customer, credential, secret


def throttle_hit(*, scope: str, key: str, limit: int, window: timedelta) -> bool:
    """Count one request for `key` in `scope`; True while at most `limit` were made in the
    current fixed window of `window`, False past it.

    Atomic across requests and Lambda instances: the count is one row, raised by an UPDATE
    that holds its row lock until commit, so concurrent requests queue on it and each reads
    the count the one before it left. Windows that have ended are deleted as it goes.
    """
    seconds = int(window.total_seconds())
    now = timezone.now()
    start = datetime.fromtimestamp(int(now.timestamp()) // seconds * seconds, tz=UTC)
    hashed = salted_hmac("creditportal.throttle", f"{scope}:{key}", algorithm="sha256").hexdigest()
    counted = Throttle.objects.filter(scope=scope, key=hashed, window_start=start)
    with transaction.atomic():
        if not counted.update(hits=F("hits") + 1):
            try:
                with transaction.atomic():
                    Throttle.objects.create(scope=scope, key=hashed, window_start=start, hits=1)
            except IntegrityError:  # created meanwhile by a concurrent request: count on it
                counted.update(hits=F("hits") + 1)
        hits = counted.values_list("hits", flat=True).get()
    Throttle.objects.filter(window_start__lt=start - window).delete()
    return hits <= limit


@transaction.atomic
def customer_email_change(*, customer: Customer, email: str) -> Customer:
    """The one way a customer's email changes: the customer's (which purchases are matched by)
    and its login's (which they log in with) change together, so the two never drift.
    Refuses an address that another customer or login has."""
    email = normalize_email(email)
    validate_email(email)
    customer = Customer.objects.select_for_update().select_related("user").get(pk=customer.pk)
    taken = ValidationError(f"{email} is already used by another customer or login.", code="email_taken")
    others = (
        Customer.objects.alias(email_ci=Lower("email")).filter(email_ci=email).exclude(pk=customer.pk).exists()
        or User.objects.alias(email_ci=Lower("email")).filter(email_ci=email).exclude(pk=customer.user_id).exists()
    )
    if others:
        raise taken
    try:
        with transaction.atomic():  # a concurrent change to the same address loses on the unique indexes
            customer.email = customer.user.email = email
            customer.user.save(update_fields=["email"])
            customer.save(update_fields=["email"])
    except IntegrityError:
        raise taken from None
    _mirror_customer(customer)  # the save bumped the version the customer's mirror items carry
    return customer


@transaction.atomic
def user_deactivate(*, user: User) -> User:
    """No more logins for `user` and, if it is a customer's, no more API calls either: the
    customer is suspended (the token endpoint and the balance API refuse its credentials,
    the gate denies from the next call). Reactivating the login later leaves the customer
    suspended, on purpose: staff reactivate the customer on its own page."""
    user.is_active = False
    user.save(update_fields=["is_active"])
    customer = Customer.objects.filter(user=user).first()
    if customer is not None and customer.is_active:
        customer_suspend(customer=customer)
    return user


@transaction.atomic
def api_key_create(
    *,
    customer: Customer,
    name: str = "",
    products: Iterable[str] | None = None,
    allowed: Iterable[str] | None = None,
    created_by: Credential | None = None,
) -> tuple[ApiKey, str]:
    """A new API key for `customer`, and the key itself: the only time it is seen.

    `products`: the slugs it opens, some of the customer's (None or empty: all of them, now
    and later). `allowed`: the most it may open (a token's scope, when a program asks): a key
    never opens more than what asked for it; with `products` omitted it opens `allowed` then.
    Refused (ValidationError, field `products`, nothing written) for a suspended customer, for a
    product the customer does not have or `allowed` does not hold, and past MAX_ACTIVE_KEYS
    (counted under the customer's row lock, as credentials are).
    """
    Customer.objects.select_for_update().filter(pk=customer.pk).values_list("pk", flat=True).get()
    if not customer.is_active:
        raise ValidationError("This customer account is suspended.", code="suspended")
    from ledger.selectors import product_slugs_owned  # as _mirror_customer: ledger loads after this module

    owned = set(product_slugs_owned(customer=customer))
    chosen = sorted(set(products or ()))
    limit = owned if allowed is None else owned & set(allowed)
    unknown = [slug for slug in chosen if slug not in limit]
    if unknown:
        raise ValidationError(
            {
                "products": ValidationError(
                    f"Not among the products this key may open: {', '.join(unknown[:5])}. "
                    f"It may open: {', '.join(sorted(limit)) or 'none'}.",
                    code="invalid_product",
                )
            }
        )
    if not chosen and allowed is not None and limit != owned:
        chosen = sorted(limit)  # a narrowed token's key opens what the token opens, not more
    if not owned or (allowed is not None and not limit):
        raise ValidationError(
            {"products": ValidationError("There is no product for a key to open yet.", code="no_products")}
        )
    active = ApiKey.objects.filter(customer_id=customer.pk, revoked_at__isnull=True).count()
    if active >= MAX_ACTIVE_KEYS:
        raise ValidationError(
            f"{active} API keys are active already, the most there can be; revoke one before adding another.",
            code="too_many_keys",
        )
    api_key = ApiKey(customer=customer, name=name.strip(), products=chosen, created_by=created_by)
    key = api_key.set_key()
    api_key.save()
    customer.touch()
    _mirror_customer(customer, api_keys=[api_key])
    return api_key, key


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """The key opens nothing from its next call on (the gate's condition reads `creds`). Idempotent."""
    api_key = ApiKey.objects.select_for_update().select_related("customer").get(pk=api_key.pk)
    if not api_key.is_revoked:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        api_key.customer.touch()
        _mirror_customer(api_key.customer, api_keys=[api_key])
    return api_key
