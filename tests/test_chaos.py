"""Credit integrity under chaos: one stateful model test of the whole system, with faults.

A hypothesis `RuleBasedStateMachine` drives every operation against the real stack, in random
order: purchases through the Zapier webhook (new and repeat customers, redeliveries, unknown
products), staff adjustments up and down, tokens from POST /api/token/, calls through the real
authorizer handler (all three event kinds, allowed and refused), credential creation, rotation
and revocation, suspension, product deactivation and cost changes, `sync_usage`, `sync_mirror`
and `sync_mirror --check` runs; and faults in between: the DynamoDB endpoint down for a while
(tests/chaos_stack.py `Door`), a process killed between its commit and its mirror write
(`Killer`), a database connection dropped inside a webhook (`drop_connection_in_webhook`).
Postgres is real (pytest-django, committed transactions), DynamoDB a moto server over HTTP.

tests/chaos_model.py holds what must be true. After every step (`check`) and at the end of each
run, once usage is synced (`teardown`), it is compared with Postgres, the mirror, the balance
API and the drift report; each call is compared with the model's decision as it happens.
What each check proves is in docs/testing.md ("Chaos").

Reproducible: derandomized, CHAOS_EXAMPLES runs (default 12) of up to CHAOS_STEPS steps
(default 40). `CHAOS_EXAMPLES=500 pytest tests/test_chaos.py` is a longer soak, randomized
(hypothesis prints the seed to replay a failure). A failure prints the shrunk sequence of steps,
each followed by what the model made of it.
"""

import base64
import io
import json
import os
import re
import time
from collections import Counter
from urllib.parse import urlencode

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Count, Q, Sum
from django.test import Client
from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from accounts.models import Credential, Customer, User
from accounts.services import (
    credential_create,
    credential_revoke,
    credential_rotate,
    customer_reactivate,
    customer_suspend,
)
from authorizer import mirror as m
from authorizer.gate import LANDING_MARGIN_MS, NO_STAMP
from ledger.mirror.items import plain
from ledger.mirror.sync import mirror_drift
from ledger.models import Balance, LedgerEntry, Product, Purchase
from ledger.services import credits_adjust, product_upsert
from tests import chaos_model as cm
from tests.authorizer.support import EVENT_KINDS, load_event
from tests.chaos_stack import Door, Killer, drop_connection_in_webhook
from tests.chaos_store import PACK_ARGS, StoreRules
from tests.conftest import ZAPIER_URL

EXAMPLES = int(os.environ.get("CHAOS_EXAMPLES", "0") or 0)
STEPS = int(os.environ.get("CHAOS_STEPS", "40"))
# slug, API id, default cost, route prices: weather's GET /forecast costs 3 and GET /request is free
# (the sample events call those: chaos_model.ROUTE_OF_KIND), so calls of costs 0, 1, 2, 3 mix.
PRODUCTS = [("weather", "wthr000001", 1, {"GET /forecast": 3, "GET /request": 0}), ("maps", "maps000001", 2, {})]
SLUGS = [slug for slug, *_ in PRODUCTS]
STATS: Counter = Counter()  # what the runs did, printed at the end (pytest -s)

customer_index = st.integers(0, 7)
credits = st.integers(1, 9)


class Stack:
    """The real parts, for the whole test: set up by the `chaos_stack` fixture."""

    door: Door
    killer: Killer
    handler: object
    live_url: str
    main_moto: str
    reader: object  # a full DynamoDB client on the session's moto server (always up): the checks read here


class CreditChaos(StoreRules, RuleBasedStateMachine):
    stack: Stack

    def __init__(self) -> None:
        super().__init__()
        s = self.stack
        if not s.door.is_up:
            s.door.up()
        _empty_the_stack(s)
        self.staff = User.objects.create_user("staff@chaos.test", "staff password", name="Staff", is_staff=True)
        for slug, api_id, cost, routes in PRODUCTS:
            product_upsert(
                slug=slug, name=slug.title(), api_ids=[api_id], cost_per_call=cost, routes=routes, **PACK_ARGS[slug]
            )
        self.model = cm.Model([cm.Product(slug, api_id, cost, dict(routes)) for slug, api_id, cost, routes in PRODUCTS])
        self.client = Client()
        self.orders = 0
        self.shopify_serial = 0
        self.shopify_orders: list[dict] = []  # orders/paid payloads sent
        self.refund_payloads: list[dict] = []
        self.broken = True  # until the first check passes: teardown checks only a run that got so far
        STATS["runs"] += 1

    # --- helpers -------------------------------------------------------------------------------

    def step(self, what: str) -> None:
        self.broken = True
        STATS[what] += 1

    def pick(self, index: int) -> cm.Customer:
        return self.model.customers[index % len(self.model.customers)]

    def db_customer(self, customer: cm.Customer) -> Customer:
        return Customer.objects.get(public_id=customer.public_id)

    def next_order(self) -> str:
        self.orders += 1
        return f"o{self.orders}"

    def zapier(self, body: dict):
        return self.client.post(
            ZAPIER_URL, body, content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {django_settings.ZAPIER_WEBHOOK_SECRET}",
        )  # fmt: skip

    def granted_by_purchase(self, body: dict, response, *, new: bool) -> None:
        """The model's side of a purchase the webhook answered 201 for."""
        email, slug, quantity = body["email"], body["product"], body["quantity"]
        assert response.status_code == 201, (response.status_code, response.content)
        b = self.model.balance(email, slug)
        b.granted += quantity
        line = cm.Line(body["order_id"], "", email, slug, quantity, True, answer=response.json(), credits=quantity)
        self.model.lines[body["order_id"], ""] = line
        assert response.json()["remaining"] == b.granted - b.recorded, "the webhook's remaining is not the ledger's"
        self.model.written(self.model.of_customer(email) if new else [(email, slug)])

    # --- purchases -----------------------------------------------------------------------------

    @initialize(product=st.sampled_from(SLUGS), quantity=credits)
    def first_customer(self, product, quantity):
        """Every run starts with a customer who has bought and holds a token (the rest is the rules')."""
        self._buy_new(product, quantity)
        self._token(self.model.customers[0], self.model.customers[0].credentials[0])

    @rule(product=st.sampled_from(SLUGS), quantity=credits)
    def buy_as_a_new_customer(self, product, quantity):
        self._buy_new(product, quantity)

    def _buy_new(self, product: str, quantity: int) -> None:
        self.step("purchase (new customer)")
        label = f"c{len(self.model.customers)}"
        body = {"order_id": self.next_order(), "email": f"{label}@chaos.test", "name": label, "product": product}
        body["quantity"] = quantity
        mail.outbox.clear()
        response = self.zapier(body)
        assert response.status_code == 201, response.content
        welcome = [e for e in mail.outbox if body["email"] in e.to and "Client secret:" in e.body]
        assert len(welcome) == 1, "a new customer gets one welcome email with their credentials"
        client_id = re.search(r"^Client ID: (\S+)", welcome[0].body, re.M).group(1)
        secret = re.search(r"^Client secret: (\S+)", welcome[0].body, re.M).group(1)
        customer = cm.Customer(label, body["email"], response.json()["customer"])
        customer.credentials.append(cm.Credential(client_id, secret, version=1))
        self.model.customers.append(customer)
        self.granted_by_purchase(body, response, new=True)
        note(f"{label} bought {quantity} {product} (order {body['order_id']}): a new customer, {client_id}")

    @precondition(lambda self: self.model.customers)
    @rule(customer=customer_index, product=st.sampled_from(SLUGS), quantity=credits)
    def buy_again(self, customer, product, quantity):
        self.step("purchase (repeat customer)")
        c = self.pick(customer)
        body = {"order_id": self.next_order(), "email": c.email, "name": c.label, "product": product}
        body["quantity"] = quantity
        self.granted_by_purchase(body, self.zapier(body), new=False)
        note(f"{c.label} bought {quantity} {product} more (order {body['order_id']})")

    @precondition(lambda self: self.model.lines)
    @rule(line=st.integers(0, 30), changed=st.booleans())
    def redeliver(self, line, changed):
        """Zapier delivers a line again: the same (200, the first answer) or changed (409): nothing changes."""
        self.step("redelivery")
        lines = [ln for ln in self.model.lines.values() if not ln.line_id]  # the Zapier door's
        ln = lines[line % len(lines)]
        body = {"order_id": ln.order_id, "email": ln.email, "name": "", "product": ln.product}
        body["quantity"] = ln.quantity + (1 if changed else 0)
        response = self.zapier(body)
        if changed:
            assert response.status_code == 409, (response.status_code, response.content)
        else:
            assert response.status_code == (200 if ln.granted else 202), (response.status_code, response.content)
            if ln.answer is not None:  # None: first delivered by a process that was killed
                assert response.json() == ln.answer, "a redelivery is not answered as the first delivery was"
        note(f"order {ln.order_id} delivered again{' with another quantity' if changed else ''}: nothing changes")

    @precondition(lambda self: self.model.customers)
    @rule(customer=customer_index)
    def buy_an_unknown_product(self, customer):
        self.step("purchase (unknown product)")
        c = self.pick(customer)
        body = {"order_id": self.next_order(), "email": c.email, "name": "", "product": "GIFT-CARD", "quantity": 5}
        response = self.zapier(body)
        assert response.status_code == 202, (response.status_code, response.content)
        line = cm.Line(body["order_id"], "", c.email, "GIFT-CARD", 5, False, answer=response.json(), status="unmatched")
        self.model.lines[body["order_id"], ""] = line
        note(f"{c.label} bought a gift card (order {body['order_id']}): stored unmatched, nothing granted")

    # --- staff --------------------------------------------------------------------------------

    @precondition(lambda self: self.model.customers)
    @rule(customer=customer_index, product=st.sampled_from(SLUGS), amount=st.integers(-6, 6).filter(bool))
    def staff_adjust(self, customer, product, amount):
        self.step("staff adjustment")
        c = self.pick(customer)
        b = self.model.balances.get((c.email, product))
        refused = amount < 0 and (b is None or b.granted + amount < b.recorded)
        try:
            credits_adjust(
                customer=self.db_customer(c), product=Product.objects.get(slug=product), amount=amount,
                reason="chaos", by=self.staff,
            )  # fmt: skip
        except ValidationError:
            assert refused, f"an adjustment of {amount} was refused; the model expected it to apply"
            note(f"staff adjust {c.label} {product} by {amount}: refused (below what the ledger has as used)")
            return
        assert not refused, f"an adjustment of {amount} applied below what was used"
        self.model.balance(c.email, product).granted += amount
        self.model.written([(c.email, product)])
        note(f"staff adjust {c.label} {product} by {amount:+}")

    @precondition(lambda self: self.model.customers)
    @rule(customer=customer_index, suspend=st.booleans())
    def suspend_or_reactivate(self, customer, suspend):
        self.step("suspension" if suspend else "reactivation")
        c = self.pick(customer)
        (customer_suspend if suspend else customer_reactivate)(customer=self.db_customer(c))
        c.active = not suspend
        self.model.written(self.model.of_customer(c.email))
        note(f"{c.label} {'suspended' if suspend else 'reactivated'}")

    @rule(product=st.sampled_from(SLUGS), active=st.booleans())
    def product_on_sale(self, product, active):
        self.step("product (de)activation")
        p = self.model.products[product]
        _, changed = product_upsert(slug=product, name=product.title(), active=active)
        assert changed == (p.active != active)
        p.active = active
        if changed:
            self.model.written(self.model.of_product(product))
        note(f"{product} {'on sale' if active else 'taken off sale'}")

    @rule(product=st.sampled_from(SLUGS), cost=st.integers(1, 3))
    def product_cost(self, product, cost):
        self.step("product cost change")
        p = self.model.products[product]
        _, changed = product_upsert(slug=product, name=product.title(), cost_per_call=cost)
        assert changed == (p.cost != cost)
        p.cost = cost
        if changed:
            self.model.written(self.model.of_product(product))
        note(f"{product} costs {cost} a call")

    # --- credentials and tokens ------------------------------------------------------------------

    @precondition(lambda self: self.model.customers)
    @rule(customer=customer_index)
    def credential_add(self, customer):
        self.step("credential created")
        c = self.pick(customer)
        full = len(c.live()) >= cm.MAX_ACTIVE_CREDENTIALS
        try:
            credential, secret = credential_create(customer=self.db_customer(c))
        except ValidationError:
            assert full, "credential_create refused below the limit"
            note(f"{c.label}: no new credential, {cm.MAX_ACTIVE_CREDENTIALS} are active")
            return
        assert not full, "credential_create went past the limit"
        c.credentials.append(cm.Credential(credential.client_id, secret, version=1))
        self.model.written(self.model.of_customer(c.email))
        note(f"{c.label}: new credential {credential.client_id}")

    @precondition(lambda self: self.model.customers)
    @rule(customer=customer_index, credential=st.integers(0, 5), revoke=st.booleans())
    def rotate_or_revoke(self, customer, credential, revoke):
        self.step("credential revoked" if revoke else "credential rotated")
        c = self.pick(customer)
        cred = c.credentials[credential % len(c.credentials)]
        row = Credential.objects.get(client_id=cred.client_id)
        if revoke:
            credential_revoke(credential=row)
            if not cred.revoked:
                cred.revoked = True
                self.model.written(self.model.of_customer(c.email))
            note(f"{c.label}: {cred.client_id} revoked")
            return
        try:
            secret = credential_rotate(credential=row)
        except ValidationError:
            assert cred.revoked, "rotating a live credential was refused"
            note(f"{c.label}: {cred.client_id} is revoked, not rotated")
            return
        assert not cred.revoked, "a revoked credential was rotated"
        cred.secret, cred.version = secret, cred.version + 1
        assert Credential.objects.get(client_id=cred.client_id).secret_version == cred.version
        self.model.written(self.model.of_customer(c.email))
        note(f"{c.label}: {cred.client_id} rotated (version {cred.version})")

    @precondition(lambda self: self.model.customers)
    @rule(customer=customer_index, credential=st.integers(0, 5))
    def token(self, customer, credential):
        c = self.pick(customer)
        self._token(c, c.credentials[credential % len(c.credentials)])

    def _token(self, c: cm.Customer, cred: cm.Credential) -> cm.Token | None:
        """POST /api/token/ with the credential's secret: a real JWT, or the refusal the model expects."""
        self.step("token requested")
        if cred.secret is None:
            return None
        data = {"grant_type": "client_credentials", "client_id": cred.client_id, "client_secret": cred.secret}
        response = self.client.post("/api/token/", urlencode(data), content_type="application/x-www-form-urlencoded")
        refusal = self.model.token_refusal(c, cred)
        if refusal:
            status = 401 if refusal == "invalid_client" else 400
            assert (response.status_code, response.json()["error"]) == (status, refusal), response.content
            note(f"{c.label}: no token for {cred.client_id} ({refusal})")
            return None
        assert response.status_code == 200, response.content
        text = response.json()["access_token"]
        claims = json.loads(base64.urlsafe_b64decode(text.split(".")[1] + "=="))
        scope = frozenset(claims["scope"].split())
        assert (claims["sub"], claims["client_id"], claims["ver"]) == (c.public_id, cred.client_id, cred.version)
        assert scope == self.model.owned(c.email), "a token covers exactly the customer's products"
        token = cm.Token(text, c.email, cred.client_id, cred.version, scope)
        self.model.tokens.append(token)
        note(f"{c.label}: token {len(self.model.tokens) - 1} for {cred.client_id} v{cred.version}, {sorted(scope)}")
        return token

    # --- calls -----------------------------------------------------------------------------------

    @precondition(lambda self: self.model.tokens)
    @rule(token=st.integers(0, 30), product=st.sampled_from(["its own", *SLUGS]), kind=st.sampled_from(EVENT_KINDS),
          times=st.integers(1, 4))  # fmt: skip
    def call(self, token, product, kind, times):
        """Calls through authorizer.handler.lambda_handler: each decided exactly as the model says."""
        self._calls(self.model.tokens[token % len(self.model.tokens)], product, kind, times)

    @precondition(lambda self: self.model.tokens)
    @rule(token=st.integers(0, 30), product=st.sampled_from(["its own", *SLUGS]), kind=st.sampled_from(EVENT_KINDS))
    def spend_until_refused(self, token, product, kind):
        """Calls until the first Deny (at most 12): the edge where credits run out, where oversell would show."""
        self._until_refused(token, product, kind)

    def _until_refused(self, token: int, product: str, kind: str, *, limit: int = 12) -> None:
        t = self.model.tokens[token % len(self.model.tokens)]
        for _ in range(limit):
            before = len(self.model.calls)
            self._calls(t, product, kind, 1)
            if len(self.model.calls) == before:
                return

    # Calls are most of what the gate sees: the same rule under more names, so that hypothesis (which
    # picks among the rules enabled) spends most steps on them.
    @precondition(lambda self: self.model.tokens)
    @rule(token=st.integers(0, 30), product=st.sampled_from(["its own", *SLUGS]), kind=st.sampled_from(EVENT_KINDS))
    def spend_until_refused_again(self, token, product, kind):
        self._until_refused(token, product, kind)

    @precondition(lambda self: self.model.tokens)
    @rule(token=st.integers(0, 30), product=st.sampled_from(["its own", *SLUGS]), kind=st.sampled_from(EVENT_KINDS))
    def spend_until_refused_once_more(self, token, product, kind):
        self._until_refused(token, product, kind)

    @precondition(lambda self: self.model.tokens)
    @rule(token=st.integers(0, 30), kind=st.sampled_from(EVENT_KINDS), times=st.integers(1, 4))
    def call_its_own(self, token, kind, times):
        self._calls(self.model.tokens[token % len(self.model.tokens)], "its own", kind, times)

    @precondition(lambda self: self.model.customers)
    @rule(customer=customer_index, credential=st.integers(0, 5), product=st.sampled_from(["its own", *SLUGS]),
          kind=st.sampled_from(EVENT_KINDS), times=st.integers(1, 6))  # fmt: skip
    def call_with_a_new_token(self, customer, credential, product, kind, times):
        c = self.pick(customer)
        token = self._token(c, c.credentials[credential % len(c.credentials)])
        if token is not None:
            self._calls(token, product, kind, times)

    @precondition(lambda self: self.model.tokens and self.model.mirror_up)
    @rule(token=st.integers(0, 30), product=st.sampled_from(["its own", *SLUGS]), kind=st.sampled_from(EVENT_KINDS))
    def call_whose_answer_is_lost(self, token, product, kind):
        """DynamoDB applies the spend and its answer is lost (the door closes the connection): the gate
        sends the same stamped spend again and the call is decided as the model says, charged once."""
        self.step("fault: a spend's answer lost after the write")
        t = self.model.tokens[token % len(self.model.tokens)]
        # A refused retry cannot tell "refused" from "landed, then pushed out of the item's four stamps"
        # when four spends landed since its first send minus LANDING_MARGIN_MS: it is denied internal_error.
        item = _mirror_items(self.stack).get(
            (self.model.customer(t.email).public_id, min(t.scope) if product == "its own" else product)
        )
        oldest = (item or {}).get(m.SPENT[-1], NO_STAMP)
        edge = time.time() * 1000 - LANDING_MARGIN_MS
        if oldest != NO_STAMP and abs(int(oldest.split()[0]) - edge) < 2000:
            self._calls(t, product, kind, 1)  # too near the margin's edge to say: not lost this time
            return
        door = self.stack.door
        lost = door.answers_lost
        door.lose_next_spend()
        self._calls(t, product, kind, 1, unknown=oldest != NO_STAMP and int(oldest.split()[0]) >= edge)
        door.lose_spend = False  # a call refused before its spend (another product, unknown API) sent none
        if door.answers_lost > lost:
            STATS["spends whose answer was lost"] += 1
            note("the spend's answer was LOST after the write")

    def _calls(self, t: cm.Token, product: str, kind: str, times: int, *, unknown: bool = False) -> None:
        """`product` "its own": the first the token covers (else calls would mostly be of products not in it).
        `unknown`: a refused spend's answer is lost where the gate cannot tell it from a spend that landed."""
        self.step("call")
        if product == "its own":
            product = min(t.scope)
        token = self.model.tokens.index(t)
        c = self.model.customer(t.email)
        api_id = self.model.products[product].api_id
        seen = []
        for _ in range(times):
            expected = self.model.decide(t, product, kind)
            if unknown and expected.reason in cm.SPEND_REFUSALS:
                expected = cm.Decision(False, cm.INTERNAL_ERROR)
            allowed, context = _answer(
                self.stack.handler.lambda_handler(load_event(kind, token=t.text, api_id=api_id), None)
            )
            b = self.model.balances.get((t.email, product))
            if allowed:
                truth = self.model.truth(t.email, product)
                fresh = b.delivered == truth
                cost = context.get("cost", 1)
                spent = b.spent + cost
                # Invariants 1 and 10: a paid call never takes the spend beyond what is granted (the
                # mirror's grant; Postgres' too unless the item is stale: a change whose write is due).
                if cost:
                    assert spent <= b.delivered.granted, f"oversold: {spent} spent of {b.delivered.granted} granted"
                    assert not fresh or spent <= truth.granted, f"oversold: {spent} spent of {truth.granted} granted"
                # Invariant 6: no call of a suspended customer or revoked/rotated credential once its
                # change is in the mirror (written after its commit, or by the next scheduled run).
                live = dict(truth.creds)
                if fresh and not (truth.active and live.get(t.client_id) == t.version):
                    raise AssertionError(f"{c.label}: a call of a suspended/revoked credential was allowed")
                if not fresh:
                    b.allowed_stale += 1
                    STATS["calls allowed from a stale item (a write still due)"] += 1
            got = cm.Decision(allowed, context.get("reason"), context.get("remaining"), context.get("cost"))
            assert got == expected, f"token {token} on {product}: gate {got}, model {expected}"
            if allowed:
                assert context["customerId"] == c.public_id and context["product"] == product
                b.spent += context["cost"]
                self.model.calls.append(
                    cm.Call(f"r{len(self.model.calls)}", t.email, product, t.client_id, context["cost"])
                )
            seen.append("allow" if allowed else context["reason"])
            STATS[f"call: {'allow' if allowed else context['reason']}"] += 1
        note(f"{c.label} token {token} calls {product} x{times} ({kind}): {seen}")

    # --- scheduled runs --------------------------------------------------------------------------

    @rule()
    def sync_usage(self):
        self.step("sync_usage")
        if not self.model.mirror_up:
            with pytest.raises(CommandError):
                _run("sync_usage")
            note("sync_usage: fails, the mirror is down")
            return
        _run("sync_usage")
        self.model.repaired()
        self.model.usage_synced()
        note("sync_usage: outbox written, usage recorded")

    @rule(check=st.booleans())
    def sync_mirror(self, check):
        self.step("sync_mirror --check" if check else "sync_mirror")
        if not self.model.mirror_up:
            with pytest.raises(CommandError):
                _run("sync_mirror", *(["--check"] if check else []))
            note("sync_mirror: fails, the mirror is down")
            return
        if not check:
            assert "0 failed" in _run("sync_mirror")
            self.model.repaired()
            note("sync_mirror: every item rewritten")
            return
        stale = self.model.stale()
        if not stale:
            assert _run("sync_mirror", "--check").strip() == "no drift: the mirror matches Postgres"
        else:
            with pytest.raises(CommandError):
                _run("sync_mirror", "--check")
        note(f"sync_mirror --check: {len(stale)} stale item(s)")

    # --- faults ----------------------------------------------------------------------------------

    @precondition(lambda self: self.model.mirror_up)
    @rule()
    def mirror_goes_down(self):
        self.step("fault: DynamoDB down")
        self.stack.door.down()
        self.model.mirror_up = False
        note("DynamoDB endpoint DOWN")

    @precondition(lambda self: not self.model.mirror_up)
    @rule()
    def mirror_comes_back(self):
        self.step("fault: DynamoDB back")
        self.stack.door.up()
        self.model.mirror_up = True
        note("DynamoDB endpoint back (same data)")

    @precondition(lambda self: self.model.customers)
    @rule(what=st.sampled_from(["suspend", "revoke", "adjust", "purchase"]), customer=customer_index,
          product=st.sampled_from(SLUGS), amount=credits)  # fmt: skip
    def killed_between_commit_and_mirror_write(self, what, customer, product, amount):
        """A real process runs the change and is SIGKILLed after its commit, inside its mirror write."""
        self.step("fault: process killed after commit")
        c = self.pick(customer)
        db = self.db_customer(c)
        if what == "suspend":
            command, done = {"customer": c.public_id}, lambda: Customer.objects.get(pk=db.pk).status == "suspended"
            c.active = False
        elif what == "revoke":
            live = [cred for cred in c.credentials if not cred.revoked]
            if not live:
                return
            cred = live[amount % len(live)]
            command = {"client_id": cred.client_id}
            done = lambda: Credential.objects.get(client_id=cred.client_id).revoked_at is not None  # noqa: E731
            cred.revoked = True
        else:
            entries = LedgerEntry.objects.filter(customer=db).count()
            done = lambda: LedgerEntry.objects.filter(customer=db).count() > entries  # noqa: E731
            if what == "adjust":
                command = {"customer": c.public_id, "product": product, "amount": amount, "staff": self.staff.email}
            else:
                order = self.next_order()
                command = {"order_id": order, "email": c.email, "product_ref": product, "quantity": amount}
                self.model.lines[order, ""] = cm.Line(order, "", c.email, product, amount, True, credits=amount)
            self.model.balance(c.email, product).granted += amount
        self.stack.killer.kill_mid_write({"what": what, **command}, done)
        self.model.lost(self.model.of_customer(c.email) if what in ("suspend", "revoke") else [(c.email, product)])
        note(f"KILLED after commit, before its mirror write: {what} {c.label} {command}")

    @precondition(lambda self: self.model.balances)
    @rule(balance=st.integers(0, 30), quantity=credits)
    def connection_dropped_in_webhook(self, balance, quantity):
        """A delivery whose database connection dies mid-transaction: 500, nothing written; the store retries."""
        self.step("fault: connection dropped in a webhook")
        email, slug = list(self.model.balances)[balance % len(self.model.balances)]
        c = self.model.customer(email)
        body = {"order_id": self.next_order(), "email": email, "name": c.label, "product": slug, "quantity": quantity}
        db = self.db_customer(c)
        response = drop_connection_in_webhook(
            f"{self.stack.live_url}{ZAPIER_URL}", body,
            {"Authorization": f"Bearer {django_settings.ZAPIER_WEBHOOK_SECRET}"},
            customer_id=db.pk, product_id=Product.objects.get(slug=slug).pk,
        )  # fmt: skip
        assert response.status_code == 500, (response.status_code, response.text[:500])
        self.model.retries.append(body)
        note(f"order {body['order_id']} ({c.label} {quantity} {slug}): connection DROPPED mid-webhook, 500")

    @precondition(lambda self: self.model.retries)
    @rule()
    def store_retries(self):
        self.step("store retries a failed delivery")
        body = self.model.retries.pop(0)
        self.granted_by_purchase(body, self.zapier(body), new=False)
        note(f"order {body['order_id']} retried: granted now, once")

    # --- the checks ------------------------------------------------------------------------------

    @invariant()
    def check(self):
        _check(self.model, self.stack, self.client, final=False)
        self.broken = False

    def teardown(self):
        try:
            if not self.broken:
                if not self.model.mirror_up:
                    self.stack.door.up()
                    self.model.mirror_up = True
                _run("sync_usage")
                self.model.repaired()
                self.model.usage_synced()
                _check(self.model, self.stack, self.client, final=True)
                assert _run("sync_mirror", "--check").strip() == "no drift: the mirror matches Postgres"
                STATS["runs checked at the end"] += 1
        finally:
            if not self.stack.door.is_up:
                self.stack.door.up()


# --- helpers -----------------------------------------------------------------------------------


def _run(*command: str) -> str:
    out = io.StringIO()
    call_command(*command, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _answer(answer: dict) -> tuple[bool, dict]:
    """(allowed, context) of any of the three event kinds' answers."""
    if "isAuthorized" in answer:
        return answer["isAuthorized"], answer.get("context", {})
    return answer["policyDocument"]["Statement"][0]["Effect"] == "Allow", answer.get("context", {})


def _empty_the_stack(s: Stack) -> None:
    """Each run starts from nothing: the app's tables emptied, the mirror table made anew."""
    import requests

    with connection.cursor() as cursor:
        tables = [t for t in connection.introspection.table_names(cursor) if t.startswith(("accounts_", "ledger_"))]
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    requests.post(f"{s.main_moto}/moto-api/reset", timeout=10).raise_for_status()
    _run("create_mirror_table")
    s.handler.reset()  # an empty route cache, as the model's
    mail.outbox = []


def _mirror_items(stack: Stack) -> dict[tuple[str, str], dict]:
    """Every balance item, plain, read through the session's moto server (up while the test's door is down)."""
    items = {}
    for page in stack.reader.get_paginator("scan").paginate(TableName=django_settings.MIRROR_TABLE):
        for item in page["Items"]:
            pk, sk = item[m.PK]["S"], item[m.SK]["S"]
            if pk.startswith(m.CUSTOMER_PREFIX):
                items[pk.removeprefix(m.CUSTOMER_PREFIX), sk.removeprefix(m.PRODUCT_PREFIX)] = {
                    k: plain(v) for k, v in item.items()
                }
    return items


def _check(model: cm.Model, stack: Stack, client: Client, *, final: bool) -> None:
    public = {c.email: c.public_id for c in model.customers}
    # Postgres: the ledger's sums are the model's, and each balance row is its ledger's sums.
    ledger = {
        (row["customer__email"], row["product__slug"]): row
        for row in LedgerEntry.objects.values("customer__email", "product__slug").annotate(
            granted=Sum("amount", filter=~Q(kind=LedgerEntry.Kind.USAGE), default=0),
            used=Sum("amount", filter=Q(kind=LedgerEntry.Kind.USAGE), default=0),
        )
    }
    rows = {(b.customer.email, b.product.slug): b for b in Balance.objects.select_related("customer", "product")}
    assert set(rows) == set(model.balances), (
        f"balances in Postgres {sorted(rows)}, in the model {sorted(model.balances)}"
    )
    items = _mirror_items(stack)
    stale = set(model.stale())
    for key, b in model.balances.items():
        row, sums = rows[key], ledger.get(key, {"granted": 0, "used": 0})
        assert (sums["granted"], -sums["used"]) == (b.granted, b.recorded), (
            f"{key}: the ledger has {sums['granted']} granted, {-sums['used']} used; the model {b.granted}, {b.recorded}"
        )
        assert (row.granted, row.used) == (b.granted, b.recorded), f"{key}: the balance row is not its ledger's sums"
        # The mirror holds what was last written to it, and exactly what the gate spent.
        item = items.get((public[key[0]], key[1]))
        if b.delivered is None:
            assert item is None, f"{key}: in the mirror, never written"
        else:
            assert item is not None, f"{key}: missing from the mirror"
            have = {attr: item.get(attr) for attr in b.delivered.owned()}
            assert have == b.delivered.owned(), f"{key}: the mirror holds {have}, the model {b.delivered.owned()}"
            assert item[m.USED] == b.spent, f"{key}: the mirror's used is {item[m.USED]}, the gate spent {b.spent}"
            if key not in stale and b.recorded == b.spent:
                assert row.granted - row.used == item[m.GRANTED] - item[m.USED], (
                    f"{key}: ledger granted - used {row.granted - row.used}, mirror remaining "
                    f"{item[m.GRANTED] - item[m.USED]}"
                )
        if final:
            assert key not in stale and b.recorded == b.spent, f"{key}: still stale or unsynced after sync_usage"
    assert len(items) == len([b for b in model.balances.values() if b.delivered]), "balance items the model never had"

    # Every purchase line recorded once, granted exactly once; others kept, granting nothing. Refunds
    # never claimed more of a line than it granted (invariant 8).
    purchases = {
        (p.order_id, p.line_id): p
        for p in Purchase.objects.annotate(
            grants=Count("entries", filter=Q(entries__kind=LedgerEntry.Kind.PURCHASE)),
            credited=Sum("entries__amount", filter=Q(entries__kind=LedgerEntry.Kind.PURCHASE)),
            taken_back=Sum("entries__amount", filter=Q(entries__kind=LedgerEntry.Kind.REFUND), default=0),
        )
    }
    assert set(purchases) == set(model.lines), (
        f"purchase lines in Postgres {sorted(set(purchases) ^ set(model.lines))} differ from the model's"
    )
    for key, line in model.lines.items():
        p = purchases[key]
        if line.granted:
            assert (p.status, p.grants, p.credited) == (line.status, 1, line.credits), (
                f"order line {key}: {p.grants} grant(s) of {p.credited}, not one of {line.credits}"
            )
            assert p.credits_refunded == line.refunded <= line.credits, (
                f"order line {key}: refunds claimed {p.credits_refunded} of its {line.credits} (model {line.refunded})"
            )
            assert -p.taken_back <= line.credits, f"order line {key}: {-p.taken_back} taken back of {line.credits}"
        else:
            assert (p.status, p.grants) == (line.status, 0), f"order line {key}: {p.status}, {p.grants} grant(s)"

    # Each failed call credited back once, with its cost (invariant 9).
    credited = dict(LedgerEntry.objects.filter(kind=LedgerEntry.Kind.FAILED_CALL).values_list("request_id", "amount"))
    entries = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.FAILED_CALL).count()
    assert entries == len(credited) and credited == model.credited, (
        f"failed calls credited back: {entries} entries {credited}; the model {model.credited}"
    )

    # The drift report names exactly the stale items, and of each what differs (its version may too).
    if model.mirror_up:
        drifted: dict[tuple[str, str], set[str]] = {}
        for line in mirror_drift():
            where, what = line.split(": ", 1)
            pk, sk = where.split(" ")
            attr = "missing" if what.startswith("missing") else what.split(" ", 1)[0]
            drifted.setdefault((pk, sk), set()).add(attr)
        want = {}
        for e, p in stale:
            b, truth = model.balances[e, p], model.truth(e, p).owned()
            have = b.delivered.owned() if b.delivered else None
            attrs = {"missing"} if have is None else {a for a in truth if have[a] != truth[a]}
            want[f"{m.CUSTOMER_PREFIX}{public[e]}", f"{m.PRODUCT_PREFIX}{p}"] = attrs
        assert drifted.keys() == want.keys(), (
            f"drift report names {sorted(drifted)}, the stale items are {sorted(want)}"
        )
        for key, attrs in want.items():
            assert attrs <= drifted[key] <= attrs | {"version"}, (
                f"{key}: the drift report says {sorted(drifted[key])} differ, the model {sorted(attrs)} (and the version)"
            )

    # The balance API agrees with the ledger, and refuses what the model says it must.
    latest = {}
    for t in model.tokens:
        latest[t.email] = t
    for email, t in latest.items():
        response = client.get("/api/balance/", HTTP_AUTHORIZATION=f"Bearer {t.text}")
        if not model.token_valid(t):
            assert response.status_code == 401, f"the balance API took a token the model says is dead: {t}"
            continue
        assert response.status_code == 200, response.content
        got = {b["product"]: (b["granted"], b["used"], b["remaining"]) for b in response.json()["balances"]}
        want = {
            slug: (b.granted, b.recorded, b.granted - b.recorded)
            for (e, slug), b in model.balances.items()
            if e == email and slug in t.scope
        }
        assert got == want, f"{email}: the balance API says {got}, the ledger {want}"


# --- the test --------------------------------------------------------------------------------------


@pytest.fixture
def chaos_stack(transactional_db, moto_server, live_server, settings, monkeypatch, jwt_keys, fast_password_hashing):
    from authorizer import handler

    stack = Stack()
    stack.door = door = Door()
    door.up()
    stack.main_moto = moto_server
    settings.MIRROR_ENDPOINT_URL = door.url
    settings.MIRROR_WRITE_ATTEMPTS = 1  # an outage fails fast: botocore's retries are not under test
    # A refused connection fails at once when the door is down; up, a write must not time out on a
    # loaded machine (the model takes an up door's write as landed, as it is in production).
    settings.MIRROR_TIMEOUT_SECONDS = 20
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    environ = {
        "JWT_PUBLIC_KEY": jwt_keys.public_pem,  # the gate trusts what POST /api/token/ signs
        "JWT_ALGORITHM": jwt_keys.algorithm,
        "JWT_ISSUER": jwt_keys.issuer,
        "JWT_AUDIENCE": jwt_keys.audience,
        "AWS_ENDPOINT_URL": door.url,
        "AUTHORIZER_ROUTE_TTL": "3600",  # routes never change here: the model knows what is cached
        "AUTHORIZER_KEY_TTL": "3600",
        "AUTHORIZER_DYNAMODB_TIMEOUT": "20",  # the door serves one request at a time on a loaded machine
    }
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    handler.reset()
    stack.handler = handler
    stack.live_url = live_server.url
    import botocore.session

    stack.reader = botocore.session.get_session().create_client(
        "dynamodb", region_name="us-east-1", endpoint_url=moto_server
    )
    stack.killer = Killer()
    CreditChaos.stack = stack
    yield stack
    stack.killer.close()
    if door.is_up:
        door.down()
    monkeypatch.undo()
    handler.reset()


def test_no_credit_is_lost_or_doubled_whatever_the_order_of_operations_and_faults(chaos_stack):
    run_state_machine_as_test(
        CreditChaos,
        settings=settings(
            max_examples=EXAMPLES or 12,
            stateful_step_count=STEPS,
            derandomize=not EXAMPLES,
            database=None if not EXAMPLES else settings.default.database,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            print_blob=True,
        ),
    )
    print("\nchaos:", ", ".join(f"{what} {n}" for what, n in sorted(STATS.items())))
