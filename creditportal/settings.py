"""CreditPortal settings, read from the environment.

Safe local defaults; in production (DJANGO_DEBUG off) a missing secret is an
ImproperlyConfigured error instead of an insecure default.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def envbool(name: str, default: str) -> bool:
    """NAME as a boolean: 1/true/yes/on or 0/false/no/off, any case; unset or empty is `default`.

    Anything else stops Django, naming the variable: a typo must not quietly mean "off".
    """
    value = os.getenv(name, "").strip().lower() or default
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of {'/'.join(TRUE)} or {'/'.join(FALSE)} (any case), not {value!r}")


def envint(name: str, default: str) -> int:
    return int(os.getenv(name, default))


def envlist(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.getenv(name, default).split(",") if item.strip()]


def envsecret(name: str, dev_default: str) -> str:
    """A secret from NAME, or from the file named by NAME_FILE.

    Outside DEBUG there is no default: running with a well-known key is worse
    than not running.
    """
    value = os.getenv(name)
    if not value and os.getenv(f"{name}_FILE"):
        value = Path(os.environ[f"{name}_FILE"]).read_text().strip()
    if value:
        return value
    if DEBUG:
        return dev_default
    raise ImproperlyConfigured(f"{name} must be set when DJANGO_DEBUG is off")


DEBUG = envbool("DJANGO_DEBUG", "false")
SECRET_KEY = envsecret("DJANGO_SECRET_KEY", "dev-only-insecure-secret-key")
ALLOWED_HOSTS = envlist("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = envlist("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "creditportal.apps.CreditPortalAdminConfig",  # django.contrib.admin, the overview its index
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",  # the OpenAPI schema at /api/schema/ (creditportal/openapi.py)
    "accounts",
    "ledger",
    "axes",  # the login throttle (below)
    "csp",  # the Content-Security-Policy header (below)
    # Development tools (runstack, mailbox, seed_demo, the gateway stand-in): with DEBUG only,
    # and never in the Lambda package (deploy/build_zappa.py leaves local/ out).
    *(["local"] if DEBUG else []),
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's CSS and JS) from STATIC_ROOT: see "Deployment" below.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks
]

ROOT_URLCONF = "creditportal.urls"
WSGI_APPLICATION = "creditportal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Without DATABASE_URL a newcomer gets SQLite and needs nothing installed.
# Tests and CI always set DATABASE_URL to Postgres (see Makefile).
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=envint("DATABASE_CONN_MAX_AGE", "0"),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The token endpoint's one query is prepared once per server session (ledger.selectors): psycopg
    # prepares only statements whose parameters travel apart from the text, which Django's ORM never
    # sends, so this touches that query alone. Off (None: psycopg prepares nothing) behind a pooler
    # that cannot carry a prepared statement between transactions (pgbouncer before 1.21 in
    # transaction mode), or to keep RDS Proxy from pinning the session.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
        0 if envbool("DATABASE_PREPARED_STATEMENTS", "true") else None
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = os.getenv("DJANGO_STATIC_URL", "static/")
STATIC_ROOT = BASE_DIR / "staticfiles"

# Email: django-ses in production, any Django backend by name.
EMAIL_BACKEND = os.getenv("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_FILE_PATH = os.getenv("EMAIL_FILE_PATH", str(BASE_DIR / "sent-emails"))
DEFAULT_FROM_EMAIL = os.getenv("DEFAULT_FROM_EMAIL", "CreditPortal <credits@example.com>")
AWS_SES_REGION_NAME = os.getenv("AWS_SES_REGION_NAME", os.getenv("AWS_DEFAULT_REGION", "us-east-1"))
AWS_SES_REGION_ENDPOINT = os.getenv("AWS_SES_REGION_ENDPOINT", f"email.{AWS_SES_REGION_NAME}.amazonaws.com")
# django-ses hands boto3 an explicit endpoint (https://AWS_SES_REGION_ENDPOINT),
# which would bypass AWS_ENDPOINT_URL. None lets boto3 choose, like every other
# client here: AWS_ENDPOINT_URL (a moto server) when set, else the region's endpoint.
AWS_SES_REGION_ENDPOINT_URL = os.getenv("AWS_SES_REGION_ENDPOINT_URL") or (
    f"https://{os.environ['AWS_SES_REGION_ENDPOINT']}" if os.getenv("AWS_SES_REGION_ENDPOINT") else None
)

# django-ses's throttle sleeps in the sending request to stay under half of SES's
# rate, counting this process's sends only; the client retries SES's throttling
# errors instead (creditportal.mail). A number (0.5: half the rate) turns it on.
AWS_SES_AUTO_THROTTLE = float(os.getenv("AWS_SES_AUTO_THROTTLE", "0")) or None

REST_FRAMEWORK = {
    # The API doors authenticate themselves (webhook secret, client
    # credentials, bearer JWT); no session or basic auth on the API.
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "creditportal.parsers.JSONParser",
        "creditportal.parsers.FormParser",
    ],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# The OpenAPI schema (drf-spectacular; creditportal/openapi.py, committed as docs/openapi.yaml).
SPECTACULAR_SETTINGS = {
    "TITLE": "CreditPortal API",
    "DESCRIPTION": (
        "Sell one-off API credits. Programs get an access token with their client credentials "
        "(POST /api/token/), read their balances, and manage API keys for clients that cannot do the "
        "token exchange; the store's webhooks record purchases. Calls to the products' APIs go through "
        "API Gateway and its authorizer, not through here."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "creditportal.openapi.add_shopify_door",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.getenv("DJANGO_LOG_LEVEL", "INFO")},
}

# --- CreditPortal ---------------------------------------------------------

# Key of the HMAC-SHA256 that client secrets are stored under. Changing it
# invalidates every stored secret.
CREDENTIAL_HASH_KEY = envsecret("CREDENTIAL_HASH_KEY", "dev-only-credential-hash-key")

# Shared secret that Zapier sends as `Authorization: Bearer …`.
ZAPIER_WEBHOOK_SECRET = envsecret("ZAPIER_WEBHOOK_SECRET", "dev-only-zapier-secret")

# Shopify's webhook signing secret(s) (the custom app's "API secret key"; space-separated: during a
# rotation both the old and the new one are accepted). Unset: every Shopify webhook is refused (401).
SHOPIFY_WEBHOOK_SECRET = os.getenv("SHOPIFY_WEBHOOK_SECRET", "dev-only-shopify-secret" if DEBUG else "")

# Admin lists count their rows exactly up to this many; past that they show
# Postgres' estimate instead of counting every row (creditportal/paginator.py).
ADMIN_EXACT_COUNT_BELOW = envint("ADMIN_EXACT_COUNT_BELOW", "10000")

# Where customers reach the portal; links in emails are built from it.
PORTAL_BASE_URL = os.getenv("PORTAL_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

# The DynamoDB table the gate reads and spends from (boto3 reads
# AWS_ENDPOINT_URL itself, so a local moto server needs no setting here).
MIRROR_TABLE = os.getenv("MIRROR_TABLE", "creditportal-mirror")
AWS_REGION = os.getenv("AWS_REGION", os.getenv("AWS_DEFAULT_REGION", "us-east-1"))

# --- Transport security (HTTPS only: API Gateway terminates TLS) -------------
# docs/deploy.md says why each is safe behind API Gateway. Off with DEBUG, where
# `make run` serves plain HTTP.

# API Gateway answers HTTPS alone and tells the function so in X-Forwarded-Proto
# (Zappa builds the request from its event; nothing reaches the function otherwise).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = envbool("DJANGO_SECURE_SSL_REDIRECT", "false" if DEBUG else "true")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = envint("DJANGO_HSTS_SECONDS", "0" if DEBUG else "31536000")
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", "true")
SECURE_HSTS_PRELOAD = envbool("DJANGO_HSTS_PRELOAD", "true")
# Idle timeout: a session ends this long after its last request (each request renews it).
SESSION_COOKIE_AGE = envint("SESSION_IDLE_MINUTES", "30") * 60
SESSION_SAVE_EVERY_REQUEST = True
# Content-Security-Policy (django-csp): scripts, styles, images and fonts from this site only;
# no inline scripts or style attributes (the usage chart and the meters are inline SVG).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "object-src": [NONE],
    }
}

# --- Customer portal (accounts/urls.py at /account/) -----------------------

LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "account_dashboard"
LOGOUT_REDIRECT_URL = "account_login"

# Login throttle: django-axes counts failed logins in Postgres (so every
# Lambda instance sees the same counts). Two limits (accounts.auth.LoginThrottleHandler):
# LOGIN_FAILURE_LIMIT per (account, IP) pair, so one account's lockout never locks
# anyone else on that IP (an office, a NAT, staff's own admin login), and a much higher
# LOGIN_IP_FAILURE_LIMIT per IP over every account tried from it (one IP guessing many).
# A successful login does not reset the counts on purpose: with per-IP counting, an
# attacker's own good login would wipe the IP's failures.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses locked-out logins before the password is checked
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "accounts.auth.LoginThrottleHandler"
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", "5")  # per (account, IP) pair
LOGIN_IP_FAILURE_LIMIT = envint("LOGIN_IP_FAILURE_LIMIT", "50")  # per IP, all accounts together
AXES_COOLOFF_TIME = timedelta(minutes=envint("LOGIN_COOLOFF_MINUTES", "15"))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]  # the pair, then the IP alone
# The client's IP is REMOTE_ADDR, which Zappa sets from API Gateway's X-Forwarded-For
# (docs/portal.md says which endpoint type makes it right). django-ipware is not installed,
# so axes reads REMOTE_ADDR alone; this says so should it ever be.
AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)
AXES_USERNAME_FORM_FIELD = "username"  # what AuthenticationForm posts (it holds the email)
AXES_USERNAME_CALLABLE = "accounts.auth.login_throttle_username"
AXES_RESET_ON_SUCCESS = False
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False  # the cool-off runs from the last real try
AXES_LOCKOUT_CALLABLE = "accounts.auth.login_lockout_response"  # our page, with the cool-off in minutes
AXES_HTTP_RESPONSE_CODE = 429

# Password reset links ("email me a link"): at most this many per address and per IP
# in each window (counted in Postgres, accounts.models.Throttle, so across Lambda instances).
# Past the address's limit the answer is the usual "check your email", with no email:
# whether the address has an account is never told.
PASSWORD_RESET_EMAIL_LIMIT = envint("PASSWORD_RESET_EMAIL_LIMIT", "3")
PASSWORD_RESET_IP_LIMIT = envint("PASSWORD_RESET_IP_LIMIT", "20")
PASSWORD_RESET_WINDOW = timedelta(minutes=envint("PASSWORD_RESET_WINDOW_MINUTES", "60"))

# Low-balance email: sent once when a product's remaining credits fall below
# this fraction of the customer's last purchase of it (at least 1 credit).
LOW_BALANCE_FRACTION = float(os.getenv("LOW_BALANCE_FRACTION", "0.1"))
# Where customers buy more credits (the low-balance email and the portal link to it).
STORE_URL = os.getenv("STORE_URL", PORTAL_BASE_URL)

# --- Access tokens: POST /api/token/, /.well-known/jwks.json, the balance API ---
# The contract (header, claims, checks) is authorizer/tokens.py (shared with the gate) and docs/api.md;
# accounts/keys.py turns these keys into a keyring, accounts/tokens.py signs with PyJWT.


def envpem(name: str) -> str:
    """PEM text from NAME, or from the file named by NAME_FILE; "" if neither.

    A missing key is an error when it is first needed (accounts/keys.py says which
    variable is missing), so tests can supply keys after settings are loaded.
    Literal "\\n" sequences are read as newlines, for platforms with one-line variables.
    """
    value = os.getenv(name, "")
    if not value and os.getenv(f"{name}_FILE"):
        value = Path(os.environ[f"{name}_FILE"]).read_text()
    return value.replace("\\n", "\n").strip()


# DEBUG only, when no keys are configured: a development key pair is generated
# here once, outside the repository.
JWT_DEV_KEY_DIR = Path(os.getenv("JWT_DEV_KEY_DIR", "~/.local/share/creditportal/dev-jwt")).expanduser()

JWT = {
    "ALGORITHM": os.getenv("JWT_ALGORITHM", "ES256"),  # ES256 or RS256; verifiers pin it
    # Signs tokens (Django only).
    "SIGNING_KEY": envpem("JWT_PRIVATE_KEY"),
    # One or more PEM public keys, concatenated: every one is accepted (chosen by
    # the token's kid), so the signing key can rotate without downtime.
    "VERIFYING_KEY": envpem("JWT_PUBLIC_KEY"),
    "ISSUER": os.getenv("JWT_ISSUER", "creditportal"),
    "AUDIENCE": os.getenv("JWT_AUDIENCE", "creditportal-api"),
    "LEEWAY": envint("JWT_LEEWAY", "5"),  # seconds of clock skew allowed on exp and iat
}

# --- Deployment (Zappa on Lambda) ------------------------------------------

# Static files (the admin's CSS and JS) are served by WhiteNoise from
# STATIC_ROOT, which `make zappa-package` fills with collectstatic and ships
# inside the Lambda package: no bucket or CDN to run. Locally, runserver and
# the tests serve them as before. (WhiteNoiseMiddleware sits right after SecurityMiddleware.)

# --- The gate: the DynamoDB mirror (ledger/mirror/) ------------------------

# Off: Django writes nothing to DynamoDB (a demo without AWS or moto).
MIRROR_ENABLED = envbool("MIRROR_ENABLED", "true")
# Only to point the mirror somewhere else than boto3's own choice
# (which already honours AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_DYNAMODB).
MIRROR_ENDPOINT_URL = os.getenv("MIRROR_ENDPOINT_URL") or None
# A write that fails is retried by botocore (standard mode: throttling and
# connection errors) this many times in all, then left in the outbox for sync_usage.
MIRROR_WRITE_ATTEMPTS = envint("MIRROR_WRITE_ATTEMPTS", "3")
MIRROR_TIMEOUT_SECONDS = envint("MIRROR_TIMEOUT_SECONDS", "2")
# Parallel writes when one change touches many items (a product's balances, sync_mirror).
MIRROR_WRITE_THREADS = envint("MIRROR_WRITE_THREADS", "8")
# A product change touching more balances than this is left to the next sync_usage run
# (ledger/mirror/outbox.py) instead of being written by the request that made it.
MIRROR_AFTER_COMMIT_LIMIT = envint("MIRROR_AFTER_COMMIT_LIMIT", "1000")

# --- Local development tools (local/: runstack, mailbox, seed_demo, the API Gateway stand-in) ---

# Installed with DEBUG only (`make run` and `make mailbox` set DJANGO_DEBUG=1); not in production.
# The demo logins seed_demo keeps (staff@example.com, demo.customer@example.com).
DEMO_STAFF_PASSWORD = os.getenv("DEMO_STAFF_PASSWORD", "creditportal-demo")
DEMO_CUSTOMER_PASSWORD = os.getenv("DEMO_CUSTOMER_PASSWORD", "creditportal-demo")

# --- Request limits (issue 8: found by tests/test_attacks_webhook.py) ----------

# The largest body the Zapier webhook reads, in bytes; a larger one is a 413 and
# writes nothing. One order line is well under 1 KB, but the whole body is kept on
# the purchase (its payload), so a Zap that maps many extra fields has room.
# (Django's DATA_UPLOAD_MAX_MEMORY_SIZE does not apply: DRF reads the body stream itself.)
ZAPIER_WEBHOOK_MAX_BYTES = envint("ZAPIER_WEBHOOK_MAX_BYTES", "65536")
# The largest Shopify webhook body read (a whole order with its line items); larger is a 413.
SHOPIFY_WEBHOOK_MAX_BYTES = envint("SHOPIFY_WEBHOOK_MAX_BYTES", "1048576")
