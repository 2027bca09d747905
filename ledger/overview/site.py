"""The admin site: Django's, with the overview as its index (staff who may view the ledger see it)
and Django's own index, the list of every app, at /admin/apps/."""

from dataclasses import dataclass
from urllib.parse import urlencode

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path, reverse

from accounts.charts import bar_chart
from ledger.overview.charts import LineChart, line_chart
from ledger.overview.selectors import CHARTS, LOW_PERCENT, SERIES, Figures, Overview, overview_get, utc_midnight


@dataclass(frozen=True)
class Need:
    """A "needs a hand" line: how many, what, and the filtered list that shows them."""

    count: int
    label: str
    url: str | None
    detail: str = ""


def _needs(request: HttpRequest, o: Overview) -> list[Need]:
    def link(model: str, query: str = "") -> str | None:
        app, name = model.split(".")
        if not request.user.has_perm(f"{app}.view_{name}"):
            return None
        return reverse(f"admin:{app}_{name}_changelist") + query

    failing = f"{o.failing_mirror_writes} failed at least once" if o.failing_mirror_writes else ""
    since = utc_midnight(o.first).isoformat(sep=" ")  # an aware time: the admin's filter compares it as such
    return [
        Need(o.unmatched_purchases, "unmatched purchases", link("ledger.purchase", "?status__exact=unmatched"),
             "no product matches what the store sent: apply them to one"),
        Need(o.failed_emails, "failed emails", link("ledger.purchase", "?email_status__exact=failed"),
             "a purchase's email did not go out: resend it"),
        Need(o.pending_mirror_writes, "pending mirror writes", link("ledger.mirroroutbox"), failing),
        Need(o.refunds_found_spent, "refunds that found credits already spent",
             link("ledger.storerefund", "?" + urlencode({"found_spent": "yes", "received__gte": since})),
             "in the period: the store refunded credits the customer had used"),
        Need(o.running_low_customers, f"customers within {LOW_PERCENT}% of running out",
             link("ledger.balance", "?running_low=yes"), f"a balance with {LOW_PERCENT}% or less of its credits left"),
    ]  # fmt: skip


def _charts(figures: Figures) -> list[tuple[str, str, LineChart]]:
    """(key, title, chart) of each of CHARTS for one product (or all)."""
    labels = {s.key: s.label for s in SERIES}
    return [
        (key, title, line_chart(figures.days, [(k, labels[k], figures.daily[k]) for k in keys]))
        for key, title, keys in CHARTS
    ]


class OverviewAdminSite(admin.AdminSite):
    index_template = "admin/overview.html"
    # The app list is on the home page and at /admin/apps/, a click away through the breadcrumbs; as a
    # sidebar it took 300 of a 1280 px laptop's width from every list (tests/test_admin_browser.py).
    enable_nav_sidebar = False

    def get_urls(self):
        return [path("apps/", self.admin_view(self.apps), name="apps"), *super().get_urls()]

    def index(self, request, extra_context=None):
        context = dict(extra_context or {})
        if request.user.has_perm("ledger.view_ledgerentry"):
            overview = overview_get()
            context |= {
                "overview": overview,
                "series": SERIES,
                "charts": [(figures, _charts(figures)) for figures in [overview.total, *overview.products]],
                "purchases_chart": (bars := bar_chart(overview.purchases_daily)),
                "purchase_bars": [(bar, f"{bar.day:%a, %b %-d}: {bar.value:,}") for bar in bars.bars],
                "needs": _needs(request, overview),
                "drift_url": reverse("admin:ledger_driftcheck_changelist")
                if request.user.has_perm("ledger.view_driftcheck")
                else None,
            }
        return super().index(request, context)

    def apps(self, request: HttpRequest) -> TemplateResponse:
        """Django's own admin index: every app and model this user may see."""
        context = {
            **self.each_context(request),
            "title": self.index_title,
            "subtitle": None,
            "app_list": self.get_app_list(request),
        }
        request.current_app = self.name
        return TemplateResponse(request, "admin/index.html", context)
