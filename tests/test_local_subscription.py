"""local/subscription.py: `make run`'s stand-in for the CloudWatch Logs subscription (the filter, the batches)."""

import base64
import gzip
import json

from local.subscription import MAX_BATCH, AccessLogSubscription, subscription_filter_matches


def decoded(event: dict) -> dict:
    return json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))


def test_the_filter_passes_json_lines_of_5xx_only():
    assert subscription_filter_matches('{"status":"502"}')
    assert subscription_filter_matches('{"status":500}')
    assert not subscription_filter_matches('{"status":"200"}')
    assert not subscription_filter_matches('{"status":"403"}')
    assert not subscription_filter_matches("500 not json")
    assert not subscription_filter_matches('["500"]')


def test_new_failed_lines_go_once_in_batches_of_at_most_ten_thousand(tmp_path):
    log = tmp_path / "api-access.log"
    delivered: list[dict] = []
    subscription = AccessLogSubscription(
        log, log_group="/creditportal/local/api-access", deliver=lambda e, c: delivered.append(decoded(e)) or {}
    )
    assert subscription.poll() == []  # no log yet

    lines = [json.dumps({"requestId": str(i), "status": "502" if i % 2 else "200"}) for i in range(2 * MAX_BATCH + 4)]
    log.write_text("\n".join(lines) + "\n" + '{"requestId": "half-written", "status": "5')
    subscription.poll()
    assert [len(d["logEvents"]) for d in delivered] == [MAX_BATCH, 2]
    assert {d["messageType"] for d in delivered} == {"DATA_MESSAGE"}
    assert delivered[0]["logGroup"] == "/creditportal/local/api-access"
    sent = [json.loads(e["message"])["requestId"] for d in delivered for e in d["logEvents"]]
    assert sent == [str(i) for i in range(1, 2 * MAX_BATCH + 4, 2)]

    delivered.clear()
    with log.open("a") as f:
        f.write('03"}\n')  # the half-written line completed
    subscription.poll()
    assert [[json.loads(e["message"])["requestId"] for e in d["logEvents"]] for d in delivered] == [["half-written"]]
    delivered.clear()
    subscription.poll()
    assert delivered == []
