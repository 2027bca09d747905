"""The chaos test's model (tests/test_chaos.py): plain Python, no Django, holding what must be true.

Two layers per (customer, product) balance:

* the truth: what Postgres must hold (credits granted through purchases and adjustments,
  usage recorded by `sync_usage`), and what the gate spent (the mirror's `used`: only the
  authorizer writes it, so every allowed call adds its cost here, and nowhere else);
* `delivered`: what the mirror holds of what Django owns (granted, cost, the customer's and
  the product's state, the live credentials), as of the last write of that item. Django writes
  an item from a fresh read of Postgres, so what it holds is always the truth at some moment:
  the moment of the last change whose write reached it (after its commit, when the endpoint
  is up and the process lives), or of the last `sync_usage`/`sync_mirror` run.

A balance whose `delivered` differs from its truth is *stale*: a change committed but its
write never happened (the endpoint was down, the process was killed). The gate decides from
`delivered`, so the model predicts every decision exactly; a stale item is where the design
lets the gate lag behind Postgres, until the next scheduled run repairs it (invariant 11).
"""

from dataclasses import dataclass, field

# The gate's deny reasons (authorizer/gate.py), as the model predicts them.
INTERNAL_ERROR = "internal_error"
NO_CREDITS = "no_credits"
CREDITS_EXHAUSTED = "credits_exhausted"
CUSTOMER_SUSPENDED = "customer_suspended"
PRODUCT_INACTIVE = "product_inactive"
CREDENTIAL_REVOKED = "credential_revoked"
CREDENTIAL_ROTATED = "credential_rotated"
PRODUCT_NOT_IN_TOKEN = "product_not_in_token"
# The refusals the spend's condition makes (an item there): after a lost answer, when four spends
# landed within the landing margin, the gate cannot tell them from a spend that landed (internal_error).
SPEND_REFUSALS = (CREDITS_EXHAUSTED, CUSTOMER_SUSPENDED, PRODUCT_INACTIVE, CREDENTIAL_REVOKED, CREDENTIAL_ROTATED)

MAX_ACTIVE_CREDENTIALS = 5


@dataclass
class Credential:
    client_id: str
    secret: str | None  # None: never seen (made by a process that was killed)
    version: int
    revoked: bool = False


@dataclass
class Customer:
    label: str  # c0, c1, ...: what the printed steps call it
    email: str
    public_id: str
    credentials: list[Credential] = field(default_factory=list)
    active: bool = True

    def live(self) -> dict[str, int]:
        return {c.client_id: c.version for c in self.credentials if not c.revoked}


# The route each sample event kind calls (tests/authorizer/events/): REST TOKEN's methodArn and the
# HTTP API's routeKey say GET /forecast, the REST REQUEST event's resource GET /request.
ROUTE_OF_KIND = {"rest_token": "GET /forecast", "http_api_v2": "GET /forecast", "rest_request": "GET /request"}


@dataclass
class Product:
    slug: str
    api_id: str
    cost: int  # the default: what a call no route price matches costs
    routes: dict[str, int] = field(default_factory=dict)  # route prices (fixed for a run)
    active: bool = True

    def cost_of(self, kind: str) -> int | None:
        """The route price of this event kind's call; None: the item's default cost."""
        return self.routes.get(ROUTE_OF_KIND[kind])


@dataclass(frozen=True)
class View:
    """What the mirror holds of what Django owns of one balance item (authorizer/mirror.py)."""

    granted: int
    cost: int
    active: bool
    product_active: bool
    creds: tuple[tuple[str, int], ...]
    route_costs: tuple[int, ...] = ()

    def owned(self) -> dict:
        """The item's attributes as ledger.mirror.items.balance_owned gives them (version aside)."""
        return {
            "granted": self.granted,
            "cost": self.cost,
            "ceiling": self.granted - self.cost,
            "ceilings": {str(c): self.granted - c for c in self.route_costs},
            "active": self.active,
            "product_active": self.product_active,
            "creds": dict(self.creds),
        }


@dataclass
class Balance:
    granted: int = 0  # the ledger's purchases and adjustments
    spent: int = 0  # what the gate spent: the mirror's `used`
    recorded: int = 0  # the ledger's usage (sync_usage brings `spent` here)
    delivered: View | None = None  # what the mirror holds; None: no item yet
    # A change committed since the item's last write, whose own write never happened: the item's
    # version is behind Postgres' even where nothing the gate reads differs (a second suspension).
    pending: bool = False
    allowed_stale: int = 0  # calls allowed from a stale item (the kill window), for the report


@dataclass
class Line:
    """One store order line the model expects recorded once (and granted once, if its product is known)."""

    order_id: str
    line_id: str
    email: str
    product: str  # what the store named: a slug, or a ref no product has (unmatched)
    quantity: int
    granted: bool  # False: stored for staff (unmatched, or a Shopify line no pack maps)
    answer: dict | None = None  # the webhook's first answer (None: delivered by a process that was killed)
    credits: int = 0  # what it granted: units x the pack's credits per unit (Zapier, a slug: the quantity)
    refunded: int = 0  # credits refunds and cancellations claimed of it (never more than `credits`)
    status: str = "applied"


@dataclass
class Token:
    text: str
    email: str
    client_id: str
    version: int
    scope: frozenset[str]


@dataclass(frozen=True)
class Decision:
    allow: bool
    reason: str | None = None
    remaining: int | None = None
    cost: int | None = None  # what an allowed call spent


@dataclass
class Call:
    """An allowed call, as the gateway's access log would name it if the API then failed."""

    request_id: str
    email: str
    product: str
    client_id: str
    cost: int


class Model:
    def __init__(self, products: list[Product]) -> None:
        self.products = {p.slug: p for p in products}
        self.customers: list[Customer] = []
        self.balances: dict[tuple[str, str], Balance] = {}
        self.lines: dict[tuple[str, str], Line] = {}
        self.tokens: list[Token] = []
        self.retries: list[dict] = []  # deliveries that failed (500) and that the store sends again
        self.mirror_up = True
        self.routes_cached: set[str] = set()  # API ids the authorizer has resolved (its route cache)
        self.calls: list[Call] = []  # every allowed call
        self.credited: dict[str, int] = {}  # request id -> credits its failure was credited back with
        self.refunds: dict[str, dict] = {}  # store refund id -> its first answer's figures

    def take_back(self, claims: list[tuple[Line, int]]) -> tuple[int, int, list[tuple[str, str]]]:
        """A store refund's or cancellation's take-back (ledger/store/refunds.py): (taken, spent, balances moved).

        `claims`: (line, credits claimed), in the order the refund names them. Per balance, what the
        gate spent is recorded first; then each claim takes what is unspent, never more."""
        groups: dict[tuple[str, str], list[tuple[Line, int]]] = {}
        for line, claimed in claims:
            if line.granted and claimed > 0:
                groups.setdefault((line.email, line.product), []).append((line, claimed))
        taken_all = spent_all = 0
        moved = []
        for key, group in groups.items():
            b = self.balances[key]
            if b.delivered is not None:  # the gate's used, read from the mirror, recorded first
                b.recorded = max(b.recorded, b.spent)
            unspent = max(0, b.granted - b.recorded)
            taken_here = 0
            for line, claimed in group:
                taken = min(claimed, unspent)
                unspent -= taken
                taken_here += taken
                spent_all += claimed - taken
                line.refunded += claimed
            b.granted -= taken_here
            if taken_here or b.delivered is not None:  # an item the refund fenced is written after it too
                moved.append(key)
            taken_all += taken_here
        return taken_all, spent_all, moved

    # --- lookups --------------------------------------------------------------------------------

    def customer(self, email: str) -> Customer:
        return next(c for c in self.customers if c.email == email)

    def balance(self, email: str, slug: str) -> Balance:
        return self.balances.setdefault((email, slug), Balance())

    def owned(self, email: str) -> frozenset[str]:
        """The products a customer holds a balance of: what a new token covers."""
        return frozenset(slug for (e, slug) in self.balances if e == email)

    def truth(self, email: str, slug: str) -> View:
        customer, product = self.customer(email), self.products[slug]
        return View(
            granted=self.balances[email, slug].granted,
            cost=product.cost,
            active=customer.active,
            product_active=product.active,
            creds=tuple(sorted(customer.live().items())),
            route_costs=tuple(sorted({c for c in product.routes.values() if c > 0})),
        )

    def stale(self) -> list[tuple[str, str]]:
        return [key for key, b in self.balances.items() if b.pending or b.delivered != self.truth(*key)]

    # --- the mirror's writes ---------------------------------------------------------------------

    def written(self, keys) -> None:
        """These items were written after a commit (if the endpoint was up to take the write)."""
        if not self.mirror_up:
            self.lost(keys)
            return
        for key in keys:
            self.balances[key].delivered = self.truth(*key)
            self.balances[key].pending = False

    def lost(self, keys) -> None:
        """These items' writes never happened (the process died after its commit, or the endpoint was down)."""
        for key in keys:
            self.balances[key].pending = True

    def of_customer(self, email: str) -> list[tuple[str, str]]:
        return [key for key in self.balances if key[0] == email]

    def of_product(self, slug: str) -> list[tuple[str, str]]:
        return [key for key in self.balances if key[1] == slug]

    def repaired(self) -> None:
        """A scheduled run (sync_usage, sync_mirror) wrote every item from Postgres."""
        for key in self.balances:
            self.balances[key].delivered = self.truth(*key)
            self.balances[key].pending = False

    def usage_synced(self) -> None:
        for b in self.balances.values():
            b.recorded = b.spent

    # --- the gate --------------------------------------------------------------------------------

    def decide(self, token: Token, slug: str, kind: str) -> Decision:
        """What authorizer.handler decides for this token calling `slug`'s API (authorizer/gate.py)."""
        api_id = self.products[slug].api_id
        if api_id not in self.routes_cached:
            if not self.mirror_up:
                return Decision(False, INTERNAL_ERROR)
            self.routes_cached.add(api_id)
        if slug not in token.scope:
            return Decision(False, PRODUCT_NOT_IN_TOKEN)
        if not self.mirror_up:
            return Decision(False, INTERNAL_ERROR)
        b = self.balances.get((token.email, slug))
        view = b.delivered if b else None
        if view is None:
            return Decision(False, NO_CREDITS)
        creds = dict(view.creds)
        if not view.active:
            return Decision(False, CUSTOMER_SUSPENDED)
        if not view.product_active:
            return Decision(False, PRODUCT_INACTIVE)
        if token.client_id not in creds:
            return Decision(False, CREDENTIAL_REVOKED)
        if creds[token.client_id] != token.version:
            return Decision(False, CREDENTIAL_ROTATED)
        price = self.products[slug].cost_of(kind)
        cost = view.cost if price is None else price
        if cost and b.spent + cost > view.granted:  # a free route needs no credits left
            return Decision(False, CREDITS_EXHAUSTED)
        return Decision(True, remaining=view.granted - b.spent - cost, cost=cost)

    def token_refusal(self, customer: Customer, credential: Credential) -> str | None:
        """Why POST /api/token/ refuses this credential (accounts/tokens.py), or None."""
        if credential.revoked or not customer.active:
            return "invalid_client"
        if not self.owned(customer.email):
            return "invalid_scope"
        return None

    def token_valid(self, token: Token) -> bool:
        """Whether the balance API (which checks Postgres) takes this token."""
        customer = self.customer(token.email)
        live = customer.live()
        return customer.active and live.get(token.client_id) == token.version
