"""Login and password pieces of the customer portal: Django's auth forms,
adjusted to log in by email, throttle by email and IP, and let customers who never
had a password set one."""

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_failure_limit, get_lockout_parameters
from django.conf import settings
from django.contrib.auth import forms as auth_forms
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Sum
from django.http import HttpRequest
from django.shortcuts import render
from django.urls import reverse

from accounts.models import User, normalize_email

# What LoginThrottleHandler counts, in this order: the (account, IP) pair, then the IP alone.
LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]


class LoginThrottleHandler(AxesDatabaseHandler):
    """django-axes' database handler (AXES_HANDLER) with a limit per kind of count.

    axes compares one number, the largest of its counts, with one limit. Here the
    (account, IP) pair locks at AXES_FAILURE_LIMIT (5) and the IP, counting every account
    tried from it, at LOGIN_IP_FAILURE_LIMIT (50): so a person's typos never lock the
    others behind the same address, and one address still cannot guess at many accounts.
    The number handed to axes is the pair's count, or the whole limit once the IP has
    reached its own.
    """

    def failures(self, request: HttpRequest, credentials: dict | None = None) -> tuple[int, int]:
        """(failures of this account from this IP, failures of every account from this IP), within the cool-off."""
        if get_lockout_parameters(request, credentials) != LOCKOUT_PARAMETERS:
            raise ImproperlyConfigured(f"LoginThrottleHandler counts AXES_LOCKOUT_PARAMETERS = {LOCKOUT_PARAMETERS}")
        pair, ip = (
            attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0
            for attempts in self.get_user_attempts(request, credentials)
        )
        return pair, ip

    def get_failures(self, request: HttpRequest, credentials: dict | None = None) -> int:
        pair, ip = self.failures(request, credentials)
        if ip >= settings.LOGIN_IP_FAILURE_LIMIT:
            return max(pair, get_failure_limit(request, credentials))
        return pair


def login_throttle_username(request: HttpRequest, credentials: dict | None = None) -> str | None:
    """The account django-axes counts a login attempt against: the email as we store it,
    so `Alice@Example.com ` and `alice@example.com` share one counter."""
    username = (credentials or {}).get("username")
    if username is None:
        username = request.POST.get("username")
    return normalize_email(username) if username else None


class LoginForm(auth_forms.AuthenticationForm):
    error_messages = {
        **auth_forms.AuthenticationForm.error_messages,
        "invalid_login": "That email and password do not match an account. Check them and try again.",
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs.update({"autocomplete": "email", "inputmode": "email"})
        self.fields["password"].widget.attrs.update({"autocomplete": "current-password"})


class PasswordResetForm(auth_forms.PasswordResetForm):
    """Django's form, with two changes:

    * customers created by a purchase have no password yet (an unusable one);
      Django would ignore them, so their expired welcome link could never be
      replaced. Here every active user with the email gets the link.
    * the link is built from PORTAL_BASE_URL, like the welcome email's, not
      from the request's Host header.
    """

    def get_users(self, email: str):
        return User.objects.filter(email__iexact=normalize_email(email), is_active=True)

    def send_mail(
        self, subject_template_name, email_template_name, context, from_email, to_email, html_email_template_name=None
    ):
        path = reverse("password_reset_confirm", kwargs={"uidb64": context["uid"], "token": context["token"]})
        context = {
            **context,
            "reset_url": f"{settings.PORTAL_BASE_URL}{path}",
            "portal_url": f"{settings.PORTAL_BASE_URL}{reverse('account_dashboard')}",
            "first_password": not context["user"].has_usable_password(),
        }
        super().send_mail(
            subject_template_name, email_template_name, context, from_email, to_email, html_email_template_name
        )


def login_lockout_response(request: HttpRequest, original_response=None, credentials: dict | None = None):
    """What a locked-out login attempt gets (django-axes' AXES_LOCKOUT_CALLABLE): our page, status 429."""
    from axes.helpers import get_cool_off

    cool_off = get_cool_off(request)
    _, ip_failures = LoginThrottleHandler().failures(request, credentials)
    return render(
        request,
        "accounts/lockout.html",
        {
            "ip_locked": ip_failures >= settings.LOGIN_IP_FAILURE_LIMIT,
            "ip_failure_limit": settings.LOGIN_IP_FAILURE_LIMIT,
            "failure_limit": settings.AXES_FAILURE_LIMIT,
            "cooloff_minutes": round(cool_off.total_seconds() / 60) if cool_off else None,
        },
        status=settings.AXES_HTTP_RESPONSE_CODE,
    )
