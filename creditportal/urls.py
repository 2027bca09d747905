from django.contrib import admin
from django.urls import path

from ledger.views import ZapierPurchaseView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/purchases/zapier/", ZapierPurchaseView.as_view(), name="purchases_zapier"),
]
