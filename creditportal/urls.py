from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from ledger.views import ZapierPurchaseView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/purchases/zapier/", ZapierPurchaseView.as_view(), name="purchases_zapier"),
    path("account/", include("accounts.urls")),
    path("", RedirectView.as_view(pattern_name="account_dashboard", permanent=False)),
]
