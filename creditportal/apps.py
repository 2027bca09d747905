from django.contrib.admin.apps import AdminConfig


class CreditPortalAdminConfig(AdminConfig):
    """Django's admin with the overview as its home page (ledger/overview/site.py)."""

    default_site = "ledger.overview.site.OverviewAdminSite"
