"""Warm decision time with an API key against one raw conditional UpdateItem to the same endpoint.

As bench/authorizer_warm.py, with the call carrying an API key (`x-api-key`) instead of a token:
a warm Lambda has the key's holder and the route cached, so a decision is the same one conditional
UpdateItem, plus the key's hash and the cache lookup. Also counts the DynamoDB requests per
decision (must be 1 once the key and the route are cached).

Run: .venv/bin/python bench/authorizer_warm_key.py [iterations]   (or `make bench`)
"""

import os
import sys
import time

from _gate import environ, key_request_event, median, percentile, raw_update_params, start_instant_dynamodb
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
        the_event, params = key_request_event("rest_request"), raw_update_params()

        for _ in range(200):  # warm both: connections, route cache, key cache
            handler.lambda_handler(the_event, None)
            raw.update_item(**params)

        sent = RequestCounter(client).operations
        RequestCounter(raw)  # the same hook on both, so both pay it
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

        for i in range(iterations):  # interleaved, each first in turn
            if i % 2:
                answer = decide()
                update()
            else:
                update()
                answer = decide()
        assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow", answer
        assert answer["context"]["credentialId"] == "key_bench", answer

        per_decision = len(sent) / iterations
        spends = sent.count("UpdateItem") / iterations
        reads = sent.count("GetItem")
        report(
            "authorizer_warm_key",
            title="Authorizer, warm, with an API key: one decision vs one raw conditional UpdateItem",
            lines=[
                f"{iterations} interleaved iterations, against a DynamoDB endpoint that answers at once (own process)",
                f"decision   median {median(decision) * 1e3:7.3f} ms   p90 {percentile(decision, 0.9) * 1e3:7.3f} ms",
                f"UpdateItem median {median(request) * 1e3:7.3f} ms   p90 {percentile(request, 0.9) * 1e3:7.3f} ms",
                (
                    f"DynamoDB requests per decision: {per_decision:g}: UpdateItems {spends:g} per decision, and"
                    f" {reads} GetItem(s) re-reading the key or the route (cached AUTHORIZER_KEY_TTL and _ROUTE_TTL, 60 s)"
                ),
            ],
            ratios=[
                Ratio("warm decision with a key / raw UpdateItem (medians)", median(decision) / median(request), GOAL),
                Ratio("DynamoDB requests per decision, key and route cached", spends, 1),
                Ratio("DynamoDB requests per decision, with re-reads", per_decision),
            ],
            reproduce=command(".venv/bin/python", "bench/authorizer_warm_key.py", iterations),
        )
    finally:
        endpoint.terminate()
        endpoint.wait()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
