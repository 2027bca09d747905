"""The customer portal, included at /account/. The password views keep Django's
URL names (password_reset_confirm etc.): Django's views and the welcome email
find them by those names."""

from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views

urlpatterns = [
    path("", views.dashboard, name="account_dashboard"),
    path("usage.csv", views.usage_csv, name="account_usage_csv"),
    path("login/", views.LoginView.as_view(), name="account_login"),
    path("logout/", views.LogoutView.as_view(), name="account_logout"),
    path("credentials/new/", views.credential_add, name="account_credential_add"),
    path("credentials/<str:client_id>/rotate/", views.credential_rotate, name="account_credential_rotate"),
    path("credentials/<str:client_id>/revoke/", views.credential_revoke, name="account_credential_revoke"),
    path("keys/new/", views.api_key_add, name="account_api_key_add"),
    path("keys/<str:key_id>/revoke/", views.api_key_revoke, name="account_api_key_revoke"),
    path(
        "password/change/",
        views.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path("password/reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "password/reset/sent/",
        auth_views.PasswordResetDoneView.as_view(template_name="accounts/password_reset_done.html"),
        name="password_reset_done",
    ),
    # The welcome email links here: {PORTAL_BASE_URL}/account/reset/<uidb64>/<token>/
    path("reset/<uidb64>/<token>/", views.PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
    path(
        "reset/done/",
        auth_views.PasswordResetCompleteView.as_view(template_name="accounts/password_reset_complete.html"),
        name="password_reset_complete",
    ),
]
