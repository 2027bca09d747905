"""The chaos test's rules for the store's and the gateway's later doors (tests/test_chaos.py mixes them in):
Shopify's `orders/paid` with packs and multi-line orders (redelivered too), `refunds/create` and
`orders/cancelled` (redelivered too), and failed-call batches from the gateway's access log
(with duplicates, and delivered again). Bodies are Shopify's documented Order resource
(tests/events/shopify/orders_paid.json) with our ids and lines, signed as Shopify signs them."""

import copy
import json
import uuid

from django.conf import settings as django_settings
from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from ledger.access_logs import failed_calls_event_record, subscription_event_encode
from ledger.models import Balance
from tests import chaos_model as cm
from tests.test_shopify_webhook import event, sign

SHOPIFY_URL = "/api/purchases/shopify/"
# What the store sells: a pack's ref -> (product, credits per unit, how a line names it).
PACKS = {
    "WEATHER-10": ("weather", 10, {"sku": "WEATHER-10", "variant_id": None}),
    "variant 7001": ("weather", 5, {"sku": None, "variant_id": 7001}),  # a null SKU: matched by variant id
    "MAPS-4": ("maps", 4, {"sku": "MAPS-4", "variant_id": None}),
    "TSHIRT": (None, 0, {"sku": "TSHIRT-M", "variant_id": 457924702}),  # not ours: kept, grants nothing
}
PACK_ARGS = {
    "weather": {"skus": {"WEATHER-1": 1, "WEATHER-10": 10}, "variants": {"7001": 5}},
    "maps": {"skus": {"MAPS-1": 1, "MAPS-4": 4}},
}

order_lines = st.lists(st.tuples(st.sampled_from(list(PACKS)), st.integers(1, 2)), min_size=1, max_size=3)


class StoreRules:
    """Mixed into CreditChaos: `self.model`, `self.client`, `self.step`, `self.pick` are its."""

    def shopify(self, topic: str, payload: dict, webhook_id: str | None = None):
        body = json.dumps(payload).encode()
        return self.client.post(
            SHOPIFY_URL, body, content_type="application/json",
            HTTP_X_SHOPIFY_TOPIC=topic, HTTP_X_SHOPIFY_WEBHOOK_ID=webhook_id or str(uuid.uuid4()),
            HTTP_X_SHOPIFY_SHOP_DOMAIN="chaos.myshopify.com",
            HTTP_X_SHOPIFY_HMAC_SHA256=sign(body, django_settings.SHOPIFY_WEBHOOK_SECRET.split()[-1]),
        )  # fmt: skip

    # --- orders/paid ---------------------------------------------------------------------------

    @precondition(lambda self: self.model.customers)
    @rule(customer=st.integers(0, 7), lines=order_lines)
    def shopify_order_paid(self, customer, lines):
        """A Shopify order of packs (and maybe a T-shirt): each line granted once, units x pack size."""
        self.step("shopify orders/paid")
        c = self.pick(customer)
        self.shopify_serial += 1
        order_id = str(900000 + self.shopify_serial)
        payload = copy.deepcopy(event("orders_paid"))
        payload.update(id=int(order_id), email=c.email, contact_email=c.email, name=f"#{order_id}")
        payload["customer"].update(email=c.email, first_name=c.label, last_name="Chaos")
        payload["line_items"] = []
        model_lines = []
        for i, (ref, units) in enumerate(lines):
            slug, per_unit, names = PACKS[ref]
            line_id = f"{order_id}{i:02d}"
            payload["line_items"].append(
                {**payload_line(), **names, "id": int(line_id), "quantity": units, "name": ref, "title": ref}
            )
            line = cm.Line(order_id, line_id, c.email, slug or "TSHIRT-M", units, slug is not None)
            line.credits, line.status = units * per_unit, "applied" if slug else "other"
            model_lines.append(line)
        response = self.shopify("orders/paid", payload)
        assert response.status_code == 200, (response.status_code, response.content)
        got = [(x["line_id"], x["status"], x["credits"], x["recorded_before"]) for x in response.json()["lines"]]
        assert got == [(ln.line_id, ln.status, ln.credits if ln.granted else 0, False) for ln in model_lines], got
        moved = []
        for line in model_lines:
            self.model.lines[order_id, line.line_id] = line
            if line.granted:
                self.model.balance(c.email, line.product).granted += line.credits
                moved.append((c.email, line.product))
        self.model.written(sorted(set(moved)))
        self.shopify_orders.append(payload)
        note(f"{c.label} Shopify order {order_id}: {[(ln.product, ln.quantity, ln.credits) for ln in model_lines]}")

    @precondition(lambda self: self.shopify_orders)
    @rule(order=st.integers(0, 20))
    def shopify_order_redelivered(self, order):
        self.step("shopify orders/paid redelivered")
        payload = self.shopify_orders[order % len(self.shopify_orders)]
        response = self.shopify("orders/paid", payload)
        assert response.status_code == 200, response.content
        assert all(x["recorded_before"] for x in response.json()["lines"]), response.json()
        note(f"Shopify order {payload['id']} delivered again: nothing changes")

    # --- refunds/create and orders/cancelled ---------------------------------------------------

    def take_back(self, what: str, refund_id: str, claims: list[tuple[cm.Line, int]], send) -> None:
        """Send a refund or a cancellation; the model's take-back is what the answer and the ledger must say."""
        known = refund_id in self.model.refunds
        reads_gate = not known and any(line.granted and claimed > 0 for line, claimed in claims)
        response = send()
        if reads_gate and not self.model.mirror_up:
            assert response.status_code == 503, (response.status_code, response.content)
            note(f"{what} {refund_id}: 503, the gate cannot be read; nothing written")
            return
        assert response.status_code == 200, (response.status_code, response.content)
        answer = response.json()
        if known:
            assert answer["duplicate"] and answer["credits_taken"] == self.model.refunds[refund_id]["taken"], answer
            note(f"{what} {refund_id} delivered again: nothing changes")
            return
        taken, spent, moved = self.model.take_back(claims)
        for email, slug in moved:  # invariant 8: what was spent is never taken back (Postgres', not the model's)
            row = Balance.objects.get(customer__email=email, product__slug=slug)
            assert row.granted >= row.used, (
                f"{what} {refund_id} took back spent credits of {email} {slug}: {row.granted} granted, {row.used} used"
            )
        self.model.refunds[refund_id] = {"taken": taken, "spent": spent}
        assert (answer["duplicate"], answer["credits_taken"], answer["credits_spent"]) == (False, taken, spent), (
            f"{what} {refund_id}: took back {answer['credits_taken']} (spent {answer['credits_spent']}); "
            f"the model {taken} ({spent})"
        )
        self.model.written(moved)
        note(f"{what} {refund_id}: {taken} credits taken back, {spent} already spent")

    @precondition(lambda self: self.shopify_orders)
    @rule(order=st.integers(0, 20), units=st.lists(st.integers(0, 2), min_size=1, max_size=3), again=st.booleans())
    def shopify_refund(self, order, units, again):
        """refunds/create for some units of an order's lines (or an earlier refund delivered again)."""
        self.step("shopify refunds/create")
        payload = self.shopify_orders[order % len(self.shopify_orders)]
        order_id = str(payload["id"])
        earlier = [r for r in self.refund_payloads if str(r["order_id"]) == order_id]
        if again and earlier:
            refund = earlier[-1]
        else:
            self.shopify_serial += 1
            refund = copy.deepcopy(event("refunds_create"))
            refund.update(id=800000 + self.shopify_serial, order_id=int(order_id), note="chaos")
            refund["refund_line_items"] = [
                {**refund["refund_line_items"][0], "line_item_id": item["id"], "quantity": n}
                for item, n in zip(payload["line_items"], units, strict=False)
                if n
            ]
            if not refund["refund_line_items"]:
                return
            self.refund_payloads.append(refund)
        claims = []
        for item in refund["refund_line_items"]:
            line = self.model.lines[order_id, str(item["line_item_id"])]
            per_unit = line.credits // line.quantity if line.quantity else 0
            claims.append((line, max(0, min(item["quantity"] * per_unit, line.credits - line.refunded))))
        self.take_back("refund", str(refund["id"]), claims, lambda: self.shopify("refunds/create", refund))

    @precondition(lambda self: self.shopify_orders)
    @rule(order=st.integers(0, 20), units=st.lists(st.integers(1, 2), min_size=1, max_size=3))
    def shopify_refund_after_spending(self, order, units):
        """Spend the order's product down to fewer credits than a call costs, then refund: what was spent
        is never taken back. The calls are of the product the refund's first line granted, on a new token
        of a live credential, and paid (weather's GET /forecast, 3; maps, 2): calling "its own" product
        with the buyer's last token (often another product, a dead token, or weather's free GET /request)
        spent nothing in most runs, and a refund taking spent credits went unseen."""
        payload = self.shopify_orders[order % len(self.shopify_orders)]
        order_id = str(payload["id"])
        c = self.model.customer(payload["email"])
        granted = [ln.product for (o, _), ln in self.model.lines.items() if o == order_id and ln.granted]
        live = [cred for cred in c.credentials if not cred.revoked and cred.secret]
        token = self._token(c, live[-1]) if granted and live else None
        if token is not None and granted[0] in token.scope:
            self._until_refused(self.model.tokens.index(token), granted[0], "http_api_v2", limit=40)
        self.shopify_refund(order, units, False)

    @precondition(lambda self: self.shopify_orders)
    @rule(order=st.integers(0, 20))
    def shopify_order_cancelled(self, order):
        """orders/cancelled: every unspent credit the order's lines still hold, taken back once."""
        self.step("shopify orders/cancelled")
        payload = self.shopify_orders[order % len(self.shopify_orders)]
        order_id = str(payload["id"])
        lines = [ln for (o, _), ln in self.model.lines.items() if o == order_id]
        claims = [(ln, max(0, ln.credits - ln.refunded)) for ln in lines]
        cancelled = {**payload, "cancel_reason": "customer", "cancelled_at": "2026-12-03T18:00:00Z"}
        self.take_back(
            "cancellation", f"cancelled:{order_id}", claims, lambda: self.shopify("orders/cancelled", cancelled)
        )

    # --- failed calls ----------------------------------------------------------------------------

    @precondition(lambda self: self.model.calls)
    @rule(picks=st.lists(st.integers(0, 60), min_size=1, max_size=5), twice=st.booleans())
    def failed_calls_batch(self, picks, twice):
        """The gateway answered 5xx to some allowed calls: their access-log lines arrive in a CloudWatch
        Logs batch (a line twice in it, or lines already credited): each credited back once."""
        self.step("failed-call batch")
        calls = [self.model.calls[i % len(self.model.calls)] for i in picks]
        lines = [access_line(call, self.model.customer(call.email)) for call in calls]
        failed_calls_event_record(subscription_event_encode(lines + (lines if twice else []), log_group="chaos"))
        moved = []
        for call in calls:
            if call.cost and call.request_id not in self.model.credited:
                self.model.credited[call.request_id] = call.cost
                self.model.balance(call.email, call.product).granted += call.cost
                moved.append((call.email, call.product))
        self.model.written(sorted(set(moved)))
        note(f"failed calls {[c.request_id for c in calls]}{' (twice)' if twice else ''}: credited back once each")


def payload_line() -> dict:
    """A line item's other fields, as Shopify's documented Order has them."""
    first = event("orders_paid")["line_items"][0]
    return {k: v for k, v in first.items() if k not in ("id", "sku", "variant_id", "quantity", "name", "title")}


def access_line(call: cm.Call, customer: cm.Customer) -> str:
    """The stage's JSON access-log line (deploy/template.yaml) of a call the gateway answered 502."""
    line = {"requestId": call.request_id, "status": "502", "customerId": customer.public_id, "product": call.product}
    line |= {"cost": str(call.cost), "credentialId": call.client_id, "route": "GET /forecast"}
    return json.dumps(line | {"requestTime": "03/Dec/2026:18:00:00 +0000"})
