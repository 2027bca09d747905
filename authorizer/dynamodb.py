"""The gate's DynamoDB client: a plain botocore client, made to cost less of a cold start.

It is botocore's own client (its credential chain, SigV4 signer, endpoint
rules, retries and timeouts); what differs is what it loads to be made:

* A service model of the two operations the gate sends. `botocore_data/`
  holds botocore's DynamoDB model trimmed to GetItem and UpdateItem and the
  shapes they reach (written by `python -m deploy.dynamodb_model` from the
  installed botocore's model; a test and the zip's build check it is current).
  Beside it, botocore's `endpoints.json` with every partition, region and
  variant but only DynamoDB's service entry (the same script writes it; a test
  shows it resolves DynamoDB as botocore's 1.2 MB file does everywhere): a
  client parses that file whole when it is made. The folder is the first of
  the loader's extra search paths (botocore's data path, where AWS_DATA_PATH's
  entries follow it), so botocore loads these two instead of its own; every
  other data file (endpoint rules, partitions, defaults) is botocore's own.
* Before it loads a service model, botocore's loader lists every service in
  every search path (440-odd directories, once for the model and once for its
  endpoint rules) only to check that the name exists. This loader is told the
  one service it serves and looks at that one alone (see `DynamoDBLoader`).
* A session registers botocore's 127 built-in event handlers, each checked
  (its signature read with `inspect`) and its event name matched against
  botocore's event aliases, although 118 of them are for other services'
  events (`before-call.s3.PutObject`, `docs.*.ec2.CopySnapshot...`) and never
  run for a DynamoDB client. This session registers, in botocore's order and
  way, the built-in handlers whose event can be DynamoDB's (see
  `handler_fires_for`; a test shows every event a DynamoDB client emits finds
  the same handlers as in botocore's own session).

Import it after `authorizer.deferred.defer_heavy_imports()`: it imports botocore.
"""

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import botocore.session
from botocore import handlers
from botocore.config import Config
from botocore.exceptions import DataNotFoundError
from botocore.loaders import Loader, instance_cache

DATA_PATH = Path(__file__).resolve().parent / "botocore_data"
SERVICE = "dynamodb"
OPERATIONS = ("GetItem", "UpdateItem")


class DynamoDBLoader(Loader):  # type: ignore[misc]  # botocore has no type information
    """botocore's loader that knows it is asked for one service only.

    `list_available_services` answers from that service's own directories
    (through `list_api_versions`, as botocore's does per service) instead of
    listing all of them; everything else is botocore's Loader.
    """

    def __init__(self, *, services: Iterable[str] = (SERVICE,), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.services = tuple(services)

    @instance_cache  # type: ignore[untyped-decorator]
    def list_available_services(self, type_name: str) -> list[str]:
        known = []
        for service in self.services:
            try:
                self.list_api_versions(service, type_name)
            except DataNotFoundError:
                continue
            known.append(service)
        return sorted(known)


def handler_fires_for(event_name: str, service: str) -> bool:
    """Whether a handler registered for `event_name` can be called for an event of `service`'s client.

    botocore names a client's events `<kind>.<service id>[.<operation>…]` (docs: `docs.<kind>.<service id>…`)
    and calls a handler registered for a prefix of them, any part `*`: a handler whose service part
    names another service never runs.
    """
    parts = event_name.split(".")
    at = 2 if parts[0] == "docs" else 1
    return len(parts) <= at or parts[at] in ("*", service)


def session(service: str = SERVICE) -> Any:
    """botocore's Session with the built-in handlers that can run for `service`, registered as botocore does."""
    made = botocore.session.Session(include_builtin_handlers=False)
    events = made.get_component("event_emitter")
    for spec in handlers.BUILTIN_HANDLERS:
        event_name, handler = spec[0], spec[1]
        if not handler_fires_for(event_name, service):
            continue
        if len(spec) == 2:
            made.register(event_name, handler)
        elif spec[2] is handlers.REGISTER_FIRST:
            events.register_first(event_name, handler)
        elif spec[2] is handlers.REGISTER_LAST:
            events.register_last(event_name, handler)
    return made


def search_paths(session: Any) -> list[str]:
    """The trimmed model first, then botocore's data path setting (AWS_DATA_PATH), as botocore expands it."""
    configured = session.get_config_variable("data_path") or ""
    paths = [os.path.expanduser(os.path.expandvars(p)) for p in configured.split(os.pathsep) if p]
    return [str(DATA_PATH), *paths]


def client(*, read_timeout: float = 2.0, connect_timeout: float = 1.0) -> Any:
    """A botocore DynamoDB client of GetItem and UpdateItem. botocore reads AWS_ENDPOINT_URL and credentials itself.

    No retries inside botocore: the gate retries what surely did not land, and a spend
    whose answer was lost only as the same stamped spend, which cannot land twice (gate.py).
    """
    made = session()
    made.register_component("data_loader", DynamoDBLoader(extra_search_paths=search_paths(made)))
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return made.create_client(
        SERVICE,
        region_name=region,
        config=Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "total_max_attempts": 1},
            # Opt-in for DynamoDB, and it would need DescribeEndpoints, which the trimmed model leaves out.
            endpoint_discovery_enabled=False,
        ),
    )
