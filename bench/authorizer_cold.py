"""A cold process: import the authorizer and make one decision, against
`import boto3`, a client and one raw conditional UpdateItem to the same endpoint.

Each run is a fresh interpreter; the time is measured inside it, from before
the first import to after the answer (interpreter start-up, the same for both,
is left out). Runs alternate between the two, many times; medians compared.
Two authorizer variants: routed by API id (a GetItem, then the UpdateItem) and
pinned with AUTHORIZER_PRODUCT (a GetItem of the called API's route prices, then the UpdateItem: the
same two requests since route prices).

A third process is the floor under any botocore-based gate: only what no
botocore client can do without (botocore.auth's SigV4 signer, which imports
botocore.compat, botocore.utils and urllib3; botocore.credentials' chain, here
its first provider, the environment's; urllib3 with both timeouts), signing
and sending the same UpdateItem by hand, with no client, no token check and no
GetItem. It is not a way to build the gate (the goal keeps botocore's client);
it shows how far down the goal can be reached by trimming around botocore.

Against moto, each request also waits for moto's own work (about 7 ms here), twice
for the gate (GetItem, UpdateItem) and once for the baseline; the routed pair is
timed again against bench/_instant_dynamodb.py, an endpoint that answers at once
(as the warm benchmarks are), to show what the two clients cost without it.

Then where the time goes: a few more fresh processes of each under
`python -X importtime`, each module's own time (not counting the modules it
imports, which would blame whoever imports a shared module first) summed per
top-level package; medians, the three largest shown. The handler module's
own time is its init (the botocore client, the keys), shown apart.

Run: .venv/bin/python bench/authorizer_cold.py [runs]   (or `make bench`)
"""

import json
import os
import subprocess
import sys
from collections import Counter, defaultdict

from _gate import ROOT, environ, event, median, prepare_table, raw_update_params, start_instant_dynamodb, start_moto
from _report import Ratio, command, report
from tqdm import tqdm

GOAL = 0.50
BREAKDOWN_RUNS = 9
HANDLER_INIT = "authorizer.handler init (client, keys)"

AUTHORIZER = """
import time
t0 = time.perf_counter()
from authorizer.handler import lambda_handler
answer = lambda_handler(EVENT, None)
t1 = time.perf_counter()
assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow", answer
print(t1 - t0)
"""

BOTO3 = """
import time
t0 = time.perf_counter()
import boto3
client = boto3.client("dynamodb")
params = PARAMS
params["ExpressionAttributeValues"][":stamp"] = {"S": f"{time.time_ns():019d} cold"}  # each process's own
client.update_item(**params)
t1 = time.perf_counter()
print(t1 - t0)
"""


FLOOR = """
import time
t0 = time.perf_counter()
import json, os
import botocore.auth, botocore.credentials, urllib3
from botocore.awsrequest import AWSRequest
credentials = botocore.credentials.EnvProvider().load()
params = PARAMS
params["ExpressionAttributeValues"][":stamp"] = {"S": f"{time.time_ns():019d} cold"}  # each process's own
body = json.dumps(params)
url = os.environ["AWS_ENDPOINT_URL"] + "/"
headers = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "DynamoDB_20120810.UpdateItem"}
request = AWSRequest(method="POST", url=url, data=body, headers=headers)
botocore.auth.SigV4Auth(credentials, "dynamodb", os.environ["AWS_REGION"]).add_auth(request)
http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1, read=2), retries=False)
response = http.request("POST", url, body=body.encode(), headers=dict(request.headers.items()))
assert response.status == 200 and "Attributes" in json.loads(response.data), response.data
t1 = time.perf_counter()
print(t1 - t0)
"""


def timed(code: str, env: dict[str, str]) -> float:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def import_costs(code: str, env: dict[str, str], runs: int = BREAKDOWN_RUNS) -> tuple[float, list[tuple[str, float]]]:
    """(median total, [(package, median seconds)] largest first) of `code`'s imports under -X importtime."""
    totals, per_package = [], defaultdict(list)
    for _ in range(runs):
        err = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        costs = Counter()
        for line in err.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            own, _cumulative, name = line.removeprefix("import time:").split("|")
            name = name.strip()
            costs[HANDLER_INIT if name == "authorizer.handler" else name.split(".")[0]] += int(own) / 1e6
        totals.append(sum(costs.values()))
        for package, seconds in costs.items():
            per_package[package].append(seconds)
    ranked = sorted(((p, median(v + [0.0] * (runs - len(v)))) for p, v in per_package.items()), key=lambda pv: -pv[1])
    return median(totals), ranked


def breakdown_line(what: str, total: float, ranked: list[tuple[str, float]]) -> str:
    top = ", ".join(f"{package} {seconds * 1e3:.1f} ms" for package, seconds in ranked[:3])
    return f"{what:38s} imports {total * 1e3:6.1f} ms; largest: {top}"


def main(runs: int) -> None:
    moto, url = start_moto()
    instant, instant_url = start_instant_dynamodb()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JWT_", "AUTHORIZER_", "MIRROR_"))}
        env |= environ(url) | {"PYTHONDONTWRITEBYTECODE": "0"}
        os.environ.update(environ(url))
        from tests.authorizer.support import full_dynamodb_client

        prepare_table(full_dynamodb_client())
        the_event = json.dumps(event("rest_request"))
        authorizer_code = AUTHORIZER.replace("EVENT", f"__import__('json').loads({the_event!r})")
        boto3_code = BOTO3.replace("PARAMS", repr(raw_update_params()))
        floor_code = FLOOR.replace("PARAMS", repr(raw_update_params()))
        pinned_env = env | {"AUTHORIZER_PRODUCT": "weather"}
        instant_env = env | {"AWS_ENDPOINT_URL": instant_url}

        # As the zip's build does (deploy/build_authorizer.py): the regexes the handler's import compiles, compiled ahead.
        subprocess.run([sys.executable, "-m", "authorizer.regexes", "build"], cwd=ROOT, env=env, check=True)
        for _ in range(2):  # compile bytecode caches, warm the page cache
            timed(authorizer_code, env), timed(boto3_code, env), timed(floor_code, env)
        routed, pinned, boto3, floor, routed_at_once, boto3_at_once = [], [], [], [], [], []
        load = os.getloadavg()[0]
        for _ in tqdm(range(runs), desc="authorizer_cold", unit="round (6 processes)"):
            routed.append(timed(authorizer_code, env))
            boto3.append(timed(boto3_code, env))
            pinned.append(timed(authorizer_code, pinned_env))
            floor.append(timed(floor_code, env))
            routed_at_once.append(timed(authorizer_code, instant_env))
            boto3_at_once.append(timed(boto3_code, instant_env))
        load = max(load, os.getloadavg()[0])

        base = median(boto3)
        print(f"import-time breakdown: {BREAKDOWN_RUNS} more fresh processes of each under -X importtime", flush=True)
        gate_imports = import_costs(authorizer_code, env)
        boto3_imports = import_costs(boto3_code, env)
        floor_imports = import_costs(floor_code, env)
        report(
            "authorizer_cold",
            title="Authorizer, cold process: import + one decision vs import boto3 + client + one UpdateItem",
            lines=[
                f"{runs} fresh processes each, alternating; time measured inside each, from the first import",
                f"load average (1 min) up to {load:.2f} on {os.cpu_count()} CPUs during the timed runs",
                f"boto3 + client + UpdateItem             median {base * 1e3:7.1f} ms",
                f"authorizer, routed (GetItem + Update)   median {median(routed) * 1e3:7.1f} ms",
                f"authorizer, AUTHORIZER_PRODUCT pinned   median {median(pinned) * 1e3:7.1f} ms",
                f"floor: SigV4 + env credentials + urllib3 {median(floor) * 1e3:7.1f} ms",
                "against an endpoint that answers at once (moto's own work per request left out):",
                f"  boto3 + client + UpdateItem           median {median(boto3_at_once) * 1e3:7.1f} ms",
                f"  authorizer, routed (GetItem + Update) median {median(routed_at_once) * 1e3:7.1f} ms",
                "",
                f"where it goes (python -X importtime, own time per package, medians of {BREAKDOWN_RUNS} runs):",
                breakdown_line("authorizer, routed", *gate_imports),
                breakdown_line("boto3 + client + UpdateItem", *boto3_imports),
                breakdown_line("floor (signer, credentials, urllib3)", *floor_imports),
            ],
            ratios=[
                Ratio("cold authorizer, routed / boto3 + client + UpdateItem", median(routed) / base, GOAL),
                Ratio("cold authorizer, pinned / boto3 + client + UpdateItem", median(pinned) / base, GOAL),
                Ratio("floor (botocore signer + credentials + urllib3) / the same", median(floor) / base),
                Ratio(
                    "the routed pair against an endpoint answering at once",
                    median(routed_at_once) / median(boto3_at_once),
                    GOAL,
                ),
            ],
            reproduce=command(".venv/bin/python", "bench/authorizer_cold.py", runs),
        )
    finally:
        for server in (moto, instant):
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60)
