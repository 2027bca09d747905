"""The customer portal at /account/. Views are thin: reads come from
accounts/selectors.py, writes go through accounts/services.py.

No URL carries anything another customer could swap in to see or change their
things: credentials are looked up by client id *within the logged-in user's
customer*, so a foreign client id is a 404 and changes nothing."""

import csv
import datetime
import io
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts import selectors, services
from accounts.auth import LoginForm, PasswordResetForm
from accounts.charts import bar_chart
from accounts.forms import ApiKeyForm
from accounts.models import ApiKey, Credential, Customer, normalize_email

RECENT_PURCHASES = 10
USAGE_DAYS = 30


def customer_required(view):
    """Logged-in customers get the view with their Customer; staff go to admin;
    a login without a customer gets a page that says so."""

    @wraps(view)
    @never_cache  # these pages show secrets and balances: no browser or proxy cache
    @login_required
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.user.is_staff:
            return redirect("admin:index")
        customer = selectors.customer_for_user(user=request.user)
        if customer is None:
            return render(request, "accounts/no_customer.html", status=403)
        return view(request, customer, *args, **kwargs)

    return wrapper


def _own_credential(customer: Customer, client_id: str) -> Credential:
    credential = selectors.credential_get(customer=customer, client_id=client_id)
    if credential is None:
        raise Http404("No such credential.")
    return credential


def _secret_shown_once(request: HttpRequest, credential: Credential, secret: str, *, rotated: bool) -> HttpResponse:
    """The answer to the POST that made `secret`: the one place it is ever shown. It is kept
    nowhere (not in the session, not in a message): only its hash is stored. The response is
    marked no-store (customer_required's never_cache), so no browser or proxy keeps it either."""
    return render(
        request, "accounts/credential_secret.html", {"credential": credential, "secret": secret, "rotated": rotated}
    )


def _month(value: str | None, this_month: datetime.date) -> datetime.date:
    """The month a `?month=YYYY-MM` names (this month when absent); ValueError says what is wrong."""
    if not value:
        return this_month
    try:
        month = datetime.datetime.strptime(value, "%Y-%m").date()
    except ValueError:
        raise ValueError(
            f"month must be a year and month as YYYY-MM (e.g. {this_month:%Y-%m}), not {value[:20]!r}"
        ) from None
    if month > this_month:
        raise ValueError(f"month {value} has not begun: the latest is {this_month:%Y-%m}")
    return month


@customer_required
@require_http_methods(["GET", "HEAD"])
def usage_csv(request: HttpRequest, customer: Customer) -> HttpResponse:
    """The customer's own credits used per day (UTC) and product in one month, as CSV."""
    this_month = timezone.now().astimezone(datetime.UTC).date().replace(day=1)
    try:
        month = _month(request.GET.get("month"), this_month)
    except ValueError as e:
        return HttpResponse(f"{e}\n", status=400, content_type="text/plain; charset=utf-8")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["date", "product", "product name", "credits used"])
    usage = selectors.usage_month(customer=customer, month=month)
    for i, (day, _) in enumerate(usage[0].days if usage else []):
        for u in usage:
            writer.writerow([day.isoformat(), u.product.slug, u.product.name, u.days[i][1]])
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="usage-{month:%Y-%m}.csv"'
    return response


@customer_required
@require_http_methods(["GET", "HEAD"])
def dashboard(request: HttpRequest, customer: Customer) -> HttpResponse:
    balances = list(selectors.balance_list(customer=customer))
    usage = selectors.usage_daily(customer=customer, products=[b.product for b in balances], days=USAGE_DAYS)
    credentials = list(selectors.credential_list(customer=customer))
    active = [c for c in credentials if not c.is_revoked]
    return render(
        request,
        "accounts/dashboard.html",
        {
            "customer": customer,
            "panels": [
                {
                    "balance": b,
                    "usage": u,
                    "chart": bar_chart(u.days),
                    "percent_left": max(0, min(100, round(100 * b.remaining / b.granted))) if b.granted > 0 else 0,
                    "low": b.remaining <= 0 or b.low_balance_notified is not None,
                    "routes": sorted(b.product.routes.items()),  # its priced routes (ledger/route_prices.py)
                }
                for b, u in zip(balances, usage, strict=True)
            ],
            "read_at": timezone.now(),
            "usage_days": USAGE_DAYS,
            "this_month": timezone.now().astimezone(datetime.UTC).strftime("%Y-%m"),
            "credentials": credentials,
            "can_add_credential": len(active) < services.MAX_ACTIVE_CREDENTIALS,
            "example_client_id": active[0].client_id if active else "YOUR_CLIENT_ID",
            "token_url": f"{settings.PORTAL_BASE_URL}/api/token/",
            "api_keys": selectors.api_key_list(customer=customer),
            "key_form": ApiKeyForm(products=[(b.product.slug, b.product.name) for b in balances]),
            "purchases": selectors.purchase_list_recent(customer=customer, limit=RECENT_PURCHASES),
            "store_url": settings.STORE_URL,
        },
    )


@customer_required
@require_http_methods(["GET", "POST"])
def credential_rotate(request: HttpRequest, customer: Customer, client_id: str) -> HttpResponse:
    """GET asks to confirm; POST rotates and shows the new secret once, in its own response."""
    credential = _own_credential(customer, client_id)
    if request.method == "POST":
        try:
            secret = services.credential_rotate(credential=credential)
        except ValidationError as e:
            messages.error(request, " ".join(e.messages))
            return redirect("account_dashboard")
        return _secret_shown_once(request, credential, secret, rotated=True)
    if credential.is_revoked:
        messages.error(request, f"{credential.client_id} is revoked: it cannot be rotated.")
        return redirect("account_dashboard")
    return render(request, "accounts/credential_confirm.html", {"credential": credential, "action": "rotate"})


@customer_required
@require_http_methods(["GET", "POST"])
def credential_revoke(request: HttpRequest, customer: Customer, client_id: str) -> HttpResponse:
    """GET asks to confirm; POST revokes: no new tokens, and issued ones are refused at their next call."""
    credential = _own_credential(customer, client_id)
    if request.method == "POST":
        services.credential_revoke(credential=credential)
        messages.success(
            request,
            f"{credential.client_id} is revoked: it gets no new tokens, and its tokens are refused from the next call.",
        )
        return redirect("account_dashboard")
    if credential.is_revoked:
        messages.info(request, f"{credential.client_id} is already revoked.")
        return redirect("account_dashboard")
    others = sum(1 for c in selectors.credential_list(customer=customer) if not c.is_revoked and c.pk != credential.pk)
    return render(
        request,
        "accounts/credential_confirm.html",
        {"credential": credential, "action": "revoke", "last_one": others == 0},
    )


@customer_required
@require_POST
def credential_add(request: HttpRequest, customer: Customer) -> HttpResponse:
    """A new client id and secret, e.g. after revoking the last one (the service enforces the limit)."""
    try:
        credential, secret = services.credential_create(customer=customer)
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
        return redirect("account_dashboard")
    return _secret_shown_once(request, credential, secret, rotated=False)


@customer_required
@require_POST
def api_key_add(request: HttpRequest, customer: Customer) -> HttpResponse:
    """A new API key, shown once in this response (only its hash is kept, as for secrets)."""
    choices = [(b.product.slug, b.product.name) for b in selectors.balance_list(customer=customer)]
    form = ApiKeyForm(request.POST, products=choices)
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
        return redirect("account_dashboard")
    try:
        api_key, key = services.api_key_create(
            customer=customer, name=form.cleaned_data["name"], products=form.cleaned_data["products"]
        )
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
        return redirect("account_dashboard")
    return render(request, "accounts/api_key_created.html", {"api_key": api_key, "key": key})


def _own_api_key(customer: Customer, key_id: str) -> ApiKey:
    api_key = selectors.api_key_get(customer=customer, key_id=key_id)
    if api_key is None:
        raise Http404("No such API key.")
    return api_key


@customer_required
@require_http_methods(["GET", "POST"])
def api_key_revoke(request: HttpRequest, customer: Customer, key_id: str) -> HttpResponse:
    """GET asks to confirm; POST revokes: the key is refused from its next call."""
    api_key = _own_api_key(customer, key_id)
    if request.method == "POST":
        services.api_key_revoke(api_key=api_key)
        messages.success(request, f"API key {api_key.masked} is revoked: it is refused from the next call.")
        return redirect("account_dashboard")
    if api_key.is_revoked:
        messages.info(request, f"API key {api_key.masked} is already revoked.")
        return redirect("account_dashboard")
    return render(request, "accounts/api_key_confirm.html", {"api_key": api_key})


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    authentication_form = LoginForm
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    next_page = "account_login"

    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        messages.info(request, "You are logged out.")
        return response


class PasswordResetView(auth_views.PasswordResetView):
    """Django's view, throttled per IP (a clear 429: it says nothing about any address) and per
    address (past it, the same "check your email" answer, without an email, whether or not
    the address has an account)."""

    form_class = PasswordResetForm
    template_name = "accounts/password_reset_form.html"
    subject_template_name = "emails/password_reset_subject.txt"
    email_template_name = "emails/password_reset.txt"
    html_email_template_name = "emails/password_reset.html"

    def form_valid(self, form):
        window = settings.PASSWORD_RESET_WINDOW
        ip = self.request.META.get("REMOTE_ADDR") or ""  # the address the login throttle counts too
        if not services.throttle_hit(
            scope="password-reset-ip", key=ip, limit=settings.PASSWORD_RESET_IP_LIMIT, window=window
        ):
            context = {"window_minutes": round(window.total_seconds() / 60)}
            return render(self.request, "accounts/password_reset_throttled.html", context, status=429)
        email = normalize_email(form.cleaned_data["email"])
        if not services.throttle_hit(
            scope="password-reset-email", key=email, limit=settings.PASSWORD_RESET_EMAIL_LIMIT, window=window
        ):
            return redirect(self.get_success_url())
        return super().form_valid(form)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Where the welcome email's link lands: "set your password" for a new customer,
    "choose a new password" after a reset. Logs the customer in when done."""

    template_name = "accounts/password_reset_confirm.html"
    post_reset_login = True
    post_reset_login_backend = "django.contrib.auth.backends.ModelBackend"
    success_url = reverse_lazy("account_dashboard")

    def form_valid(self, form):
        first = not self.user.has_usable_password()
        response = super().form_valid(form)
        messages.success(self.request, "Your password is set. Welcome!" if first else "Your new password is set.")
        return response


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/password_change_form.html"
    success_url = reverse_lazy("account_dashboard")

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, "Your password is changed.")
        return response
