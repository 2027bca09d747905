"""A DynamoDB endpoint that answers at once: the gate's two requests, from memory, nothing checked.

    python bench/_instant_dynamodb.py PORT

For the warm benchmark: against moto a request costs milliseconds of moto's
own work, which hides what the client and the gate add. This answers
`GetItem` with a route and its route prices (or, for a key's `KEY#` item, with bench/_gate.py's API key) and
`UpdateItem` with a balance (`ALL_NEW`), in the
JSON 1.0 protocol botocore speaks to DynamoDB, over keep-alive HTTP/1.1, in
its own process. It counts nothing and stores nothing: the decision's
semantics are the tests' business (tests/authorizer, tests/test_gate.py).
"""

import json
import sys

# As bench/_gate.py's ROUTE_PRICES (this process imports nothing of the project).
_ROUTE_PRICES = {
    "POST /jobs": 10,
    "GET /jobs/{id}": 1,
    "DELETE /jobs/{id}": 1,
    "GET /health": 0,
    "ANY /files/{proxy+}": 3,
    "GET /files/public/{name}": 1,
}
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The route item carries the product's route prices (bench/_gate.py's ROUTE_PRICES).
ROUTES = {"M": {route: {"N": str(cost)} for route, cost in _ROUTE_PRICES.items()}}
ANSWERS = {
    "DynamoDB_20120810.GetItem": {"Item": {"product": {"S": "weather"}, "routes": ROUTES}},
    "DynamoDB_20120810.UpdateItem": {
        "Attributes": {"granted": {"N": "1000000000000"}, "used": {"N": "1"}, "cost": {"N": "1"}}
    },
}
BODIES = {target: json.dumps(answer).encode() for target, answer in ANSWERS.items()}
KEY_ITEM = json.dumps(
    {
        "Item": {
            "key_id": {"S": "key_bench"},
            "customer": {"S": "cus_bench"},
            "products": {"L": []},
            "revoked": {"BOOL": False},
            "version": {"N": "1"},
        }
    }
).encode()
UNKNOWN = json.dumps({"__type": "com.amazon.coral.service#UnknownOperationException", "message": "not here"}).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no waiting for an ACK between them

    def do_POST(self):
        request = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        target = self.headers.get("X-Amz-Target", "")
        body = BODIES.get(target, UNKNOWN)
        if target.endswith(".GetItem") and b'"KEY#' in request:
            body = KEY_ITEM
        self.send_response(200 if body is not UNKNOWN else 400)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("x-amzn-RequestId", "instant")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()
