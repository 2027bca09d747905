"""creditportal/scheduled.py: what Zappa's scheduled events (zappa_settings.json) run."""

import importlib
import inspect
import json
import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from creditportal import scheduled
from ledger.models import Balance, LedgerEntry
from ledger.services import credits_grant

ROOT = Path(__file__).resolve().parent.parent
# Zappa names each EventBridge rule after the function; this is what it accepts.
ZAPPA_FUNCTION_NAME = re.compile(r"[._A-Za-z0-9]{0,63}")
# A scheduled event as EventBridge delivers it.
EVENT = {
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/creditportal-dev-creditportal.scheduled.sync_usage"],
    "detail": {},
}


def stage_events(stage: str) -> list[dict]:
    settings = json.loads((ROOT / "zappa_settings.json").read_text())
    return settings[stage].get("events") or settings[settings[stage]["extends"]]["events"]


@pytest.mark.parametrize("stage", ["dev", "production"])
def test_usage_syncs_every_minute_the_mirror_is_checked_and_sessions_cleared_daily(stage):
    schedule = {event["function"]: event["expression"] for event in stage_events(stage)}
    assert schedule.pop("creditportal.scheduled.sync_usage") == "rate(1 minute)"
    daily = re.compile(r"cron\(\d+ \d+ \* \* \? \*\)")
    assert daily.fullmatch(schedule.pop("creditportal.scheduled.sync_mirror_check"))
    assert daily.fullmatch(schedule.pop("creditportal.scheduled.clear_sessions"))
    assert schedule == {}


@pytest.mark.parametrize("stage", ["dev", "production"])
def test_every_scheduled_function_exists_and_takes_zappas_arguments(stage):
    for event in stage_events(stage):
        assert ZAPPA_FUNCTION_NAME.fullmatch(event["function"])
        module, name = event["function"].rsplit(".", 1)
        function = getattr(importlib.import_module(module), name)
        inspect.signature(function).bind(EVENT, None)  # Zappa calls function(event, context)


def test_the_minute_run_brings_usage_spent_at_the_gate_into_the_ledger(
    mirror, alice, products, django_capture_on_commit_callbacks
):
    weather = products["weather"]
    with django_capture_on_commit_callbacks(execute=True):
        credits_grant(customer=alice, product=weather, amount=10)
    mirror.spend(alice, weather, used=4)

    scheduled.sync_usage(EVENT, None)
    scheduled.sync_usage(EVENT, None)  # every minute: a second run finds nothing new

    usage = LedgerEntry.objects.filter(customer=alice, product=weather, kind=LedgerEntry.Kind.USAGE)
    assert list(usage.values_list("amount", flat=True)) == [-4]
    assert Balance.objects.get(customer=alice, product=weather).used == 4


def test_the_daily_check_fails_the_invocation_on_drift_and_passes_without(
    mirror, alice, products, django_capture_on_commit_callbacks
):
    weather = products["weather"]
    credits_grant(customer=alice, product=weather, amount=10)
    call_command("sync_mirror", stdout=StringIO(), stderr=StringIO())  # products and balance, in step
    scheduled.sync_mirror_check(EVENT, None)  # nothing raised

    # Postgres moves on while the mirror does not hear of it (the write is never run).
    with django_capture_on_commit_callbacks(execute=False):
        credits_grant(customer=alice, product=weather, amount=5)
    with pytest.raises(CommandError, match="differs from Postgres"):
        scheduled.sync_mirror_check(EVENT, None)  # a Lambda error: the alarm's signal
    assert mirror.balance(alice, weather)["granted"] == 10  # a check only compares


def test_the_daily_clear_deletes_expired_sessions_and_keeps_live_ones(alice, bob):
    import datetime

    from django.contrib.sessions.models import Session
    from django.test import Client
    from django.utils import timezone

    for customer in (alice, bob):
        Client().force_login(customer.user)
    [expired, live] = Session.objects.order_by("expire_date")
    Session.objects.filter(pk=expired.pk).update(expire_date=timezone.now() - datetime.timedelta(seconds=1))

    scheduled.clear_sessions(EVENT, None)

    assert list(Session.objects.values_list("pk", flat=True)) == [live.pk]
