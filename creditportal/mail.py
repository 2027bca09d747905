"""Email through Amazon SES, with one SES client per process.

django-ses builds a new boto3 session and client for every message it sends:
loading SES's service model costs more than the purchase it announces (the
webhook ran at about a tenth of its speed without emails, see bench/RESULTS.md).
A botocore client is thread-safe and meant to be reused, so the process keeps
one per configuration; everything else is django-ses's.

Its client retries SES's throttling errors with botocore's standard backoff.
django-ses's own throttle (AWS_SES_AUTO_THROTTLE) is off in settings: it sleeps
inside the request that sends, counting only this process's sends, which says
little when many Lambda instances send at once.

    EMAIL_BACKEND=creditportal.mail.SESBackend
"""

import functools
import os
import threading

import django_ses

_clients: dict[tuple, object] = {}
_lock = threading.Lock()


@functools.cache
def _client_config():
    from botocore.config import Config  # here, not at import: Django starts without botocore

    return Config(connect_timeout=5, read_timeout=10, retries={"mode": "standard", "total_max_attempts": 4})


class SESBackend(django_ses.SESBackend):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._config = self._config or _client_config()

    def _client_key(self) -> tuple:
        # What decides where and as whom the client sends: its settings, and the
        # environment boto3 reads when it builds a client (a test's moto server).
        environment = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SES", "AWS_PROFILE", "AWS_ACCESS_KEY_ID")
        return (
            self._session_profile,
            self._access_key_id,
            self._access_key,
            self._session_token,
            self._region_name,
            self._endpoint_url,
            id(self._config),
            self._use_ses_v2,
            *(os.getenv(name) for name in environment),
        )

    def open(self) -> bool:
        if self.connection:
            return False
        key = self._client_key()
        with _lock:
            if key not in _clients:
                super().open()  # raises unless fail_silently
                if not self.connection:
                    return False
                _clients[key] = self.connection
        self.connection = _clients[key]
        return True  # send_messages closes it again: forgets the client, which stays cached here
