"""Warm decision time of the authorizer against one raw conditional UpdateItem to the same endpoint.

A warm Lambda has its client, its route and its verified token cached, so a
decision should cost little more than the one request it must make. The
endpoint answers at once (bench/_instant_dynamodb.py, its own process): what
is measured is what the client and the gate spend, not DynamoDB's (or moto's)
work. Also counts the DynamoDB requests per decision (must be 1 once the route
is cached). Twice: a call no priced route matches (the sample REST REQUEST event,
the product's default cost) against the raw UpdateItem of that shape, and a call to
a priced route (POST /jobs, 10 credits: the route matched among the product's six,
`ceilings.10`) against the raw UpdateItem of its shape.

Run: .venv/bin/python bench/authorizer_warm.py [iterations]   (or `make bench`)
"""

import os
import sys
import time

from _gate import (
    environ,
    event,
    median,
    percentile,
    priced_event,
    raw_priced_params,
    raw_update_params,
    start_instant_dynamodb,
)
from _report import Ratio, command, report

GOAL = 1.10


def main(iterations: int) -> None:
    endpoint, url = start_instant_dynamodb()
    try:
        os.environ.update(environ(url))
        from authorizer import dynamodb, handler
        from tests.authorizer.support import RequestCounter

        handler.reset()
        client = handler.runtime().gate.client
        raw = dynamodb.client()  # a client of its own, configured the same way
        the_event, params = event("rest_request"), raw_update_params()
        the_priced_event, priced_params = priced_event("rest_request"), raw_priced_params()

        for _ in range(200):  # warm both: connections, route cache, token cache
            handler.lambda_handler(the_event, None)
            handler.lambda_handler(the_priced_event, None)
            raw.update_item(**params)
            raw.update_item(**priced_params)

        # Both clients count what they send (the same botocore hook on each, so both pay it).
        sent = RequestCounter(client).operations
        RequestCounter(raw)
        decision, request, priced, priced_request = [], [], [], []

        def decide(what: dict, times: list[float]) -> dict:
            t0 = time.perf_counter()
            answer = handler.lambda_handler(what, None)
            times.append(time.perf_counter() - t0)
            return answer

        def update(what: dict, times: list[float]) -> None:
            t0 = time.perf_counter()
            raw.update_item(**what)
            times.append(time.perf_counter() - t0)

        # Interleaved, so drift on this shared machine hits both alike, and in turn first.
        for i in range(iterations):
            if i % 2:
                answer = decide(the_event, decision)
                update(params, request)
                priced_answer = decide(the_priced_event, priced)
                update(priced_params, priced_request)
            else:
                update(params, request)
                answer = decide(the_event, decision)
                update(priced_params, priced_request)
                priced_answer = decide(the_priced_event, priced)
        assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow", answer
        assert priced_answer["context"]["cost"] == 10, priced_answer

        per_decision = len(sent) / (2 * iterations)
        spends = sent.count("UpdateItem") / (2 * iterations)
        route_reads = sent.count("GetItem")
        report(
            "authorizer_warm",
            title="Authorizer, warm: one decision vs one raw conditional UpdateItem to the same endpoint",
            lines=[
                f"{iterations} interleaved iterations, against a DynamoDB endpoint that answers at once (own process)",
                f"decision   median {median(decision) * 1e3:7.3f} ms   p90 {percentile(decision, 0.9) * 1e3:7.3f} ms",
                f"UpdateItem median {median(request) * 1e3:7.3f} ms   p90 {percentile(request, 0.9) * 1e3:7.3f} ms",
                "a priced route (POST /jobs, 10 credits, matched among 6 routes; ceilings.10):",
                f"decision   median {median(priced) * 1e3:7.3f} ms   p90 {percentile(priced, 0.9) * 1e3:7.3f} ms",
                f"UpdateItem median {median(priced_request) * 1e3:7.3f} ms   "
                f"p90 {percentile(priced_request, 0.9) * 1e3:7.3f} ms",
                (
                    f"DynamoDB requests per decision: {per_decision:g}: UpdateItems {spends:g} per decision,"
                    f" and {route_reads} GetItem(s) re-reading the route (cached AUTHORIZER_ROUTE_TTL, 60 s)"
                ),
            ],
            ratios=[
                Ratio("warm decision / raw UpdateItem (medians)", median(decision) / median(request), GOAL),
                Ratio(
                    "warm decision, priced route / raw UpdateItem (medians)",
                    median(priced) / median(priced_request),
                    GOAL,
                ),
                Ratio("DynamoDB requests per decision, route cached", spends, 1),
                Ratio("DynamoDB requests per decision, with route re-reads", per_decision),
            ],
            reproduce=command(".venv/bin/python", "bench/authorizer_warm.py", iterations),
        )
    finally:
        endpoint.terminate()
        endpoint.wait()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
