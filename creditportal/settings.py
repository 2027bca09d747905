"""CreditPortal settings, read from the environment.

Safe local defaults; in production (DJANGO_DEBUG off) a missing secret is an
ImproperlyConfigured error instead of an insecure default.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: str) -> bool:
    return os.getenv(name, default).strip().lower() in ("1", "true", "yes", "on")


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
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "accounts",
    "ledger",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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

REST_FRAMEWORK = {
    # The API doors authenticate themselves (webhook secret, client
    # credentials, bearer JWT); no session or basic auth on the API.
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
    ],
    "UNAUTHENTICATED_USER": None,
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

# Where customers reach the portal; links in emails are built from it.
PORTAL_BASE_URL = os.getenv("PORTAL_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

# The DynamoDB table the gate reads and spends from (boto3 reads
# AWS_ENDPOINT_URL itself, so a local moto server needs no setting here).
MIRROR_TABLE = os.getenv("MIRROR_TABLE", "creditportal-mirror")
AWS_REGION = os.getenv("AWS_REGION", os.getenv("AWS_DEFAULT_REGION", "us-east-1"))

# --- The gate: the DynamoDB mirror (ledger/mirror.py) ------------------------

# Off: Django writes nothing to DynamoDB (a demo without AWS or moto).
MIRROR_ENABLED = envbool("MIRROR_ENABLED", "true")
# Only to point the mirror somewhere else than boto3's own choice
# (which already honours AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_DYNAMODB).
MIRROR_ENDPOINT_URL = os.getenv("MIRROR_ENDPOINT_URL") or None
# A write that fails is retried by botocore (standard mode: throttling and
# connection errors) this many times in all, then recorded as pending.
MIRROR_WRITE_ATTEMPTS = envint("MIRROR_WRITE_ATTEMPTS", "3")
MIRROR_TIMEOUT_SECONDS = envint("MIRROR_TIMEOUT_SECONDS", "2")
# Parallel writes when one change touches many items (a product's balances, sync_mirror).
MIRROR_WRITE_THREADS = envint("MIRROR_WRITE_THREADS", "8")
