import hashlib
import hmac
import secrets
import unicodedata

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower, Upper
from django.utils import timezone

from accounts.ids import public_id
from authorizer import keys as key_contract
from creditportal.versioned import Versioned


def normalize_email(email: str) -> str:
    """Emails are trimmed and compared case-insensitively; we store them lower-cased."""
    return email.strip().lower()


NAME_MAX_LENGTH = 80
# Joiners shape the letters of some scripts (Persian, Indic, emoji sequences): kept.
_JOINERS = {"\u200c", "\u200d"}


def normalize_name(name: str | None) -> str:
    """A buyer's name as we keep and greet it (the plain-text emails print it as is): one line.

    Control characters, line and paragraph separators become spaces, other invisible format
    characters (bidi overrides, zero-width spaces) go, runs of whitespace become one space,
    and the result is cut at NAME_MAX_LENGTH: a name cannot start a line of its own or carry
    a paragraph of someone else's text into our emails.
    """
    chars = []
    for char in name or "":
        category = unicodedata.category(char)
        if category == "Cf" and char not in _JOINERS:
            continue
        chars.append(" " if category in ("Cc", "Zl", "Zp") else char)
    return " ".join("".join(chars).split())[:NAME_MAX_LENGTH].rstrip()


class UserManager(BaseUserManager):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra) -> "User":
        if not email:
            raise ValueError("Users need an email address")
        user = self.model(email=normalize_email(email), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra) -> "User":
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)

    def get_by_natural_key(self, username: str) -> "User":
        return self.get(email__iexact=normalize_email(username))


class User(AbstractBaseUser, PermissionsMixin):
    """A person who logs in: a customer to the portal, or staff to admin. Logs in by email."""

    email = models.EmailField(max_length=254, unique=True)
    name = models.CharField(max_length=200, blank=True)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    EMAIL_FIELD = "email"
    USERNAME_FIELD = "email"

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="user_email_unique_ci"),
        ]

    def __str__(self) -> str:
        return self.email

    def clean(self) -> None:
        super().clean()
        self.email = normalize_email(self.email)

    def get_full_name(self) -> str:
        return self.name or self.email

    def get_short_name(self) -> str:
        return self.name or self.email


def new_customer_id() -> str:
    return public_id("cus")


class Customer(Versioned):
    """One buyer. `public_id` goes into tokens and URLs; the database id never leaves Django."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"

    public_id = models.CharField(max_length=32, unique=True, default=new_customer_id, editable=False)
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="customer")
    email = models.EmailField(max_length=254)
    name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="customer_email_unique_ci"),
        ]
        indexes = [
            models.Index(fields=["status"]),
            # The admin's order (newest first), walked by an index instead of sorting every customer.
            models.Index(fields=["-created", "-id"], name="customer_newest_first"),
            # The admin's search by public id is case-insensitive (=public_id: UPPER(public_id) = UPPER(q)).
            # Searches by email and name use trigram indexes (migration 0002, Postgres only).
            models.Index(Upper("public_id"), name="customer_public_id_upper"),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


def new_client_id() -> str:
    return public_id("cli", 24)


def hash_secret(secret: str) -> str:
    """Keyed hash of a client secret (HMAC-SHA256 with CREDENTIAL_HASH_KEY).

    Not a slow password hash on purpose: secrets are 256-bit random, so there
    is nothing to brute-force, and the token endpoint must stay fast.
    """
    key = settings.CREDENTIAL_HASH_KEY.encode()
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()


class Credential(models.Model):
    """A client id and its secret, for the customer's programs to get tokens with."""

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="credentials")
    client_id = models.CharField(max_length=40, unique=True, default=new_client_id, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    secret_last4 = models.CharField(max_length=4, editable=False)
    # Incremented when the secret is rotated; tokens carry it, and the gate
    # refuses tokens whose version is no longer the credential's.
    secret_version = models.PositiveIntegerField(default=0, editable=False)
    created = models.DateTimeField(default=timezone.now, editable=False)
    rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    # Not a column: the slugs of the customer's products, when the token endpoint's lookup
    # (ledger.selectors.credential_with_products) read them with the credential.
    customer_products: list[str]

    class Meta:
        ordering = ["created"]

    def __str__(self) -> str:
        return self.client_id

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def masked_secret(self) -> str:
        return f"…{self.secret_last4}"

    def set_secret(self) -> str:
        """Give this credential a fresh secret; return it (the only time it is seen)."""
        secret = secrets.token_urlsafe(32)  # 256 bits
        self.secret_hash = hash_secret(secret)
        self.secret_last4 = secret[-4:]
        self.secret_version += 1
        return secret

    def check_secret(self, secret: str) -> bool:
        return hmac.compare_digest(self.secret_hash, hash_secret(secret))


def new_key_id() -> str:
    return public_id("key")


class ApiKey(models.Model):
    """A static key for programs that cannot exchange client credentials for a token.

    Only its SHA-256 is kept (`key_hash`, the form and hash are authorizer/keys.py's, shared with
    the gate) and its last four characters, to tell keys apart. It opens the products its
    customer's tokens open, or the ones in `products` only. Never rotated: a new key, then revoke.
    """

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="api_keys")
    public_id = models.CharField(max_length=32, unique=True, default=new_key_id, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    last4 = models.CharField(max_length=4, editable=False)
    name = models.CharField(max_length=80, blank=True)
    # Product slugs the key opens; empty: every product the customer has, now and later.
    products = models.JSONField(default=list, blank=True)
    # The credential whose token created it through the API (None: made in the portal or admin).
    created_by = models.ForeignKey(Credential, null=True, blank=True, on_delete=models.SET_NULL, editable=False)
    created = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["created", "id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return self.public_id

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def masked(self) -> str:
        return f"{key_contract.PREFIX}…{self.last4}"

    @property
    def mirror_version(self) -> int:
        """The key item's version in the mirror: 1 while live, 2 once revoked (a key is never restored)."""
        return 2 if self.is_revoked else 1

    def covers(self, product: str) -> bool:
        return key_contract.key_covers(self.products, product)

    def set_key(self) -> str:
        """Give this key its secret value; return it (the only time it is seen)."""
        key = key_contract.PREFIX + secrets.token_urlsafe(32)  # 256 bits
        self.key_hash = key_contract.key_hash(key)
        self.last4 = key[-4:]
        return key


class Throttle(models.Model):
    """How many times something was asked for within one fixed window of time (e.g. a password
    reset link, per address and per IP). Written only by `accounts.services.throttle_hit`."""

    scope = models.CharField(max_length=32)
    # A keyed hash of what is counted (an address, an IP): nothing readable is kept, and an
    # address nobody has is stored no differently from a customer's.
    key = models.CharField(max_length=64)
    window_start = models.DateTimeField()
    hits = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "key", "window_start"], name="throttle_one_row_per_window"),
        ]
        indexes = [models.Index(fields=["window_start"])]

    def __str__(self) -> str:
        return f"{self.scope} {self.key[:8]}… {self.hits} since {self.window_start:%Y-%m-%d %H:%M}"
