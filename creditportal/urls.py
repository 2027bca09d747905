from django.contrib import admin
from django.urls import path

from accounts.api import BalanceView, TokenView, jwks
from creditportal.views import health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/health/", health, name="health"),
    path("api/token/", TokenView.as_view(), name="token"),
    path("api/balance/", BalanceView.as_view(), name="balance"),
    path(".well-known/jwks.json", jwks, name="jwks"),
]
