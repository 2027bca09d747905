from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

from accounts.api import BalanceView, TokenView, jwks
from accounts.api_keys import ApiKeysView, ApiKeyView
from creditportal import openapi
from creditportal.views import health
from ledger.store.webhooks import shopify_webhook
from ledger.views import ZapierPurchaseView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/purchases/zapier/", ZapierPurchaseView.as_view(), name="purchases_zapier"),
    path("api/purchases/shopify/", shopify_webhook, name="purchases_shopify"),
    path("account/", include("accounts.urls")),
    path("", RedirectView.as_view(pattern_name="account_dashboard", permanent=False)),
    path("api/health/", health, name="health"),
    path("api/token/", TokenView.as_view(), name="token"),
    path("api/balance/", BalanceView.as_view(), name="balance"),
    path("api/keys/", ApiKeysView.as_view(), name="api_keys"),
    path("api/keys/<str:key_id>/", ApiKeyView.as_view(), name="api_key"),
    path(".well-known/jwks.json", jwks, name="jwks"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("api/docs/", openapi.docs, name="api_docs"),
]
