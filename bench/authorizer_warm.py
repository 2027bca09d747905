"""Warm decision time of the authorizer against one raw conditional UpdateItem to the same endpoint.

A warm Lambda has its client, its route and its verified token cached, so a
decision should cost little more than the one request it must make. The
endpoint answers at once (bench/_instant_dynamodb.py, its own process): what
is measured is what the client and the gate spend, not DynamoDB's (or moto's)
work. Also counts the DynamoDB requests per decision (must be 1 once the route
is cached).

Run: .venv/bin/python bench/authorizer_warm.py [iterations]   (or `make bench`)
"""

import os
import sys
import time

from _gate import environ, event, median, percentile, raw_update_params, start_instant_dynamodb
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

        for _ in range(200):  # warm both: connections, route cache, token cache
            handler.lambda_handler(the_event, None)
            raw.update_item(**params)

        # Both clients count what they send (the same botocore hook on each, so both pay it).
        sent = RequestCounter(client).operations
        RequestCounter(raw)
        decision, request = [], []

        def decide() -> dict:
            t0 = time.perf_counter()
            answer = handler.lambda_handler(the_event, None)
            decision.append(time.perf_counter() - t0)
            return answer

        def update() -> None:
            t0 = time.perf_counter()
            raw.update_item(**params)
            request.append(time.perf_counter() - t0)

        # Interleaved, so drift on this shared machine hits both alike, and in turn first.
        for i in range(iterations):
            if i % 2:
                answer = decide()
                update()
            else:
                update()
                answer = decide()
        assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow", answer

        per_decision = len(sent) / iterations
        spends = sent.count("UpdateItem") / iterations
        route_reads = sent.count("GetItem")
        report(
            "authorizer_warm",
            title="Authorizer, warm: one decision vs one raw conditional UpdateItem to the same endpoint",
            lines=[
                f"{iterations} interleaved iterations, against a DynamoDB endpoint that answers at once (own process)",
                f"decision   median {median(decision) * 1e3:7.3f} ms   p90 {percentile(decision, 0.9) * 1e3:7.3f} ms",
                f"UpdateItem median {median(request) * 1e3:7.3f} ms   p90 {percentile(request, 0.9) * 1e3:7.3f} ms",
                (
                    f"DynamoDB requests per decision: {per_decision:g}: UpdateItems {spends:g} per decision,"
                    f" and {route_reads} GetItem(s) re-reading the route (cached AUTHORIZER_ROUTE_TTL, 60 s)"
                ),
            ],
            ratios=[
                Ratio("warm decision / raw UpdateItem (medians)", median(decision) / median(request), GOAL),
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
