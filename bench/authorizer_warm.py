"""Warm decision time of the authorizer against one raw conditional UpdateItem to the same endpoint.

A warm Lambda has its client, its route and its verified token cached, so a
decision should cost little more than the one request it must make. Also
counts the DynamoDB requests per decision (must be 1 once the route is cached).

Run: .venv/bin/python bench/authorizer_warm.py [iterations]   (or `make bench`)
"""

import os
import sys
import time

from _gate import environ, event, median, percentile, prepare_table, raw_update_params, start_moto
from _report import Ratio, command, report

GOAL = 1.10


def main(iterations: int) -> None:
    moto, url = start_moto()
    try:
        os.environ.update(environ(url))
        from authorizer import dynamodb, handler
        from tests.authorizer.support import RequestCounter, full_dynamodb_client

        handler.reset()
        client = handler.runtime().gate.client
        raw = dynamodb.client()  # a client of its own, configured the same way
        prepare_table(full_dynamodb_client())
        the_event, params = event("rest_request"), raw_update_params()

        for _ in range(200):  # warm both: connections, route cache, token cache
            handler.lambda_handler(the_event, None)
            raw.update_item(**params)

        sent = RequestCounter(client).operations
        decision, request = [], []
        for _ in range(iterations):  # interleaved, so drift on this shared machine hits both alike
            t0 = time.perf_counter()
            answer = handler.lambda_handler(the_event, None)
            t1 = time.perf_counter()
            raw.update_item(**params)
            t2 = time.perf_counter()
            decision.append(t1 - t0)
            request.append(t2 - t1)
        assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow", answer

        per_decision = len(sent) / iterations
        spends = sent.count("UpdateItem") / iterations
        route_reads = sent.count("GetItem")
        report(
            "authorizer_warm",
            title="Authorizer, warm: one decision vs one raw conditional UpdateItem to the same endpoint",
            lines=[
                f"{iterations} interleaved iterations, moto server in its own process",
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
        moto.terminate()
        moto.wait()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
