from django.apps import AppConfig


class LocalConfig(AppConfig):
    name = "local"
    verbose_name = "Local development tools"
