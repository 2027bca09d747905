"""`Versioned`: a row whose every save bumps `version`, for the gate's mirror.

A mirror item carries the sum of the versions of the rows it is built from
(balance + customer + product: ledger/mirror/items.py), and DynamoDB refuses a
write whose version is not higher than the item's (ledger/mirror/writes.py), so
a late write of an older state cannot land.

It is a mirror concern, but both apps' models need it (accounts' Customer,
ledger's Product), and accounts' models must not import ledger (ledger builds
on accounts): so it lives here, below both, like the admin paginator. Every
save bumps, whichever path made it (a service, the admin, a shell), so no path
can change what the gate sees without a new version; a save that changes
nothing the gate sees (a customer's name) costs one refused-or-harmless write.
The balance's own version is bumped by the ledger services, only when what is
granted changes (ledger/services.py).
"""

from typing import Any

from django.db import models


class Versioned(models.Model):
    """A row whose every save bumps `version`, atomically in the database."""

    version = models.PositiveBigIntegerField(default=0, editable=False)

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            self.version = models.F("version") + 1
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "version"}
        super().save(*args, **kwargs)
        if not isinstance(self.version, int):
            self.refresh_from_db(fields=["version"])

    def touch(self) -> None:
        """Bump the version alone: something the gate sees through this row changed."""
        self.save(update_fields=["version"])
