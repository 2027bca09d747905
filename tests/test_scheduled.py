"""creditportal/scheduled.py: what Zappa's scheduled events (zappa_settings.json) run."""

import importlib
import inspect
import json
import re
from pathlib import Path

import pytest
from django.core.management import CommandError, get_commands

from creditportal import scheduled

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
def test_usage_syncs_every_minute_and_the_mirror_is_checked_daily(stage):
    schedule = {event["function"]: event["expression"] for event in stage_events(stage)}
    assert schedule.pop("creditportal.scheduled.sync_usage") == "rate(1 minute)"
    assert re.fullmatch(r"cron\(\d+ \d+ \* \* \? \*\)", schedule.pop("creditportal.scheduled.sync_mirror_check"))
    assert schedule == {}


@pytest.mark.parametrize("stage", ["dev", "production"])
def test_every_scheduled_function_exists_and_takes_zappas_arguments(stage):
    for event in stage_events(stage):
        assert ZAPPA_FUNCTION_NAME.fullmatch(event["function"])
        module, name = event["function"].rsplit(".", 1)
        function = getattr(importlib.import_module(module), name)
        inspect.signature(function).bind(EVENT, None)  # Zappa calls function(event, context)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "function, command",
    [(scheduled.sync_usage, "sync_usage"), (scheduled.sync_mirror_check, "sync_mirror")],
)
def test_each_scheduled_function_runs_its_management_command(function, command, aws):
    if command not in get_commands():
        # Until the command lands (issue 5), Django's refusal names the command that was called.
        with pytest.raises(CommandError, match=f"^Unknown command: '{command}'$"):
            function(EVENT, None)
        return
    # TODO(lead, after merging issue 5): assert the command's effect (usage in the ledger,
    # drift reported) instead of only that it runs.
    function(EVENT, None)
