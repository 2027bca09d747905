"""The gate's DynamoDB service model and endpoint data: botocore's own, cut down to what it sends.

    python -m deploy.dynamodb_model [--check]

A botocore client loads, parses and walks its whole service model when it is
created (DynamoDB's: 62 operations, 553 shapes); the gate sends only
`GetItem` and `UpdateItem`. This writes
`authorizer/botocore_data/dynamodb/<api version>/service-2.json`: botocore's
installed model with those operations, every shape they reach (input, output,
errors, recursively), the metadata unchanged, and the documentation left out.

It also writes `authorizer/botocore_data/endpoints.json`: botocore's endpoint
data (every partition, its regions, defaults and variants) with the services
list cut to DynamoDB. A client parses that whole file when it is made (1.2 MB,
300-odd services: measured, about a third of making the gate's client) for
the one entry of its own service.

The authorizer puts that folder first on botocore's data path (the supported
`data_path` setting, AWS_DATA_PATH's), so its client loads these two files and
everything else (endpoint rules, partitions, defaults) from botocore itself.

`--check` writes nothing and exits 1 when a file is not what botocore
installed here gives: `make authorizer-zip` runs it, and so does a test, so an
upgraded botocore cannot leave the gate on a stale model.
"""

import argparse
import json
import sys
from pathlib import Path

from botocore.loaders import Loader

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "authorizer" / "botocore_data"
SERVICE = "dynamodb"
OPERATIONS = ("GetItem", "UpdateItem")
# Keys that hold prose for documentation only (botocore's docs machinery reads them, nothing else does).
DOCUMENTATION = frozenset({"documentation", "documentationUrl"})


def installed_model() -> dict:
    """botocore's own DynamoDB model, from its installed data alone (not AWS_DATA_PATH, not ~/.aws/models)."""
    loader = Loader(extra_search_paths=[Loader.BUILTIN_DATA_PATH], include_default_search_paths=False)
    return loader.load_service_model(SERVICE, "service-2")


def _undocumented(node):
    if isinstance(node, dict):
        return {key: _undocumented(value) for key, value in node.items() if key not in DOCUMENTATION}
    if isinstance(node, list):
        return [_undocumented(value) for value in node]
    return node


def _shape_names(shape: dict):
    """The shapes one shape refers to: structure members, list member, map key and value."""
    for member in shape.get("members", {}).values():
        yield member["shape"]
    for ref in ("member", "key", "value"):
        if ref in shape:
            yield shape[ref]["shape"]


def trimmed(model: dict, operations=OPERATIONS) -> dict:
    """`model` with only `operations` and the shapes they reach, without documentation."""
    unknown = set(operations) - set(model["operations"])
    if unknown:
        raise SystemExit(f"botocore's {SERVICE} model has no operation {', '.join(sorted(unknown))}")
    kept_operations = {name: model["operations"][name] for name in operations}
    pending = [
        ref["shape"]
        for operation in kept_operations.values()
        for ref in [operation.get("input"), operation.get("output"), *operation.get("errors", [])]
        if ref
    ]
    reached: set[str] = set()
    while pending:
        name = pending.pop()
        if name not in reached:
            reached.add(name)
            pending.extend(_shape_names(model["shapes"][name]))
    result = {key: value for key, value in model.items() if key not in ("operations", "shapes", *DOCUMENTATION)}
    result["operations"] = _undocumented(kept_operations)
    # In botocore's order, so that the file reads (and diffs) like the original.
    result["shapes"] = {name: _undocumented(shape) for name, shape in model["shapes"].items() if name in reached}
    return result


def installed_endpoints() -> dict:
    """botocore's own endpoint data (endpoints.json), from its installed data alone."""
    loader = Loader(extra_search_paths=[Loader.BUILTIN_DATA_PATH], include_default_search_paths=False)
    return loader.load_data("endpoints")


def trimmed_endpoints(endpoints: dict, services=(SERVICE,)) -> dict:
    """`endpoints` with each partition's services cut to `services`; everything else as it is."""
    partitions = [
        {
            **partition,
            "services": {name: partition["services"][name] for name in services if name in partition["services"]},
        }
        for partition in endpoints["partitions"]
    ]
    return {**endpoints, "partitions": partitions}


ENDPOINTS_PATH = DATA / "endpoints.json"


def model_path(model: dict) -> Path:
    return DATA / SERVICE / model["metadata"]["apiVersion"] / "service-2.json"


def rendered(model: dict) -> str:
    return json.dumps(model, indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    import botocore

    model = trimmed(installed_model())
    endpoints = trimmed_endpoints(installed_endpoints())
    files = [
        (model_path(model), rendered(model), f"{SERVICE} model", f"trimmed to {', '.join(OPERATIONS)}"),
        (ENDPOINTS_PATH, rendered(endpoints), "endpoint data", f"trimmed to {SERVICE}"),
    ]
    if args.check:
        stale = [(path, what, how) for path, text, what, how in files if not path.exists() or path.read_text() != text]
        for path, what, how in stale:
            print(
                f"{path.relative_to(ROOT)} is not the {what} of botocore {botocore.__version__} {how}: "
                "run `python -m deploy.dynamodb_model`",
                file=sys.stderr,
            )
        for path, _text, what, how in files:
            if all(path != s[0] for s in stale):
                print(f"{path.relative_to(ROOT)}: botocore {botocore.__version__}'s {what}, {how}")
        return 1 if stale else 0
    old_models = [p for p in (DATA / SERVICE).glob("*/service-2.json") if p != model_path(model)]
    for old in old_models:  # another API version's file would shadow nothing but mislead
        old.unlink()
    for path, text, what, how in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}: botocore {botocore.__version__}'s {what}, {how} ({len(text):,} bytes)")
    print(f"  ({len(model['operations'])} operations and {len(model['shapes'])} shapes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
