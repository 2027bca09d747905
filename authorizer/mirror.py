"""The shape of the mirror table: the one contract between Django (which
writes what it owns) and the authorizer (which only spends).

One DynamoDB table (`MIRROR_TABLE`), key `pk` (S, hash) + `sk` (S, range):

Balance item, one per (customer, product):
    pk = "CUSTOMER#<customer public id>", sk = "PRODUCT#<product slug>"
    granted         N     credits granted, from the ledger            (Django)
    cost            N     credits a call costs that no priced route
                          matches: the product's default              (Django)
    ceiling         N     granted - cost: such a call is allowed while
                          used <= ceiling (conditions do no arithmetic) (Django)
    ceilings        M     {"<c>": N granted - c} for each distinct cost
                          c > 0 of the product's priced routes: a call
                          of cost c is allowed while used <= ceilings.<c>
                          (one threshold per cost: with calls of several
                          costs at once, nothing is spent past granted,
                          and a call is refused only when fewer than its
                          cost remain); rewritten with every change of
                          granted or of the route prices              (Django)
    active          BOOL  the customer is active (not suspended)      (Django)
    product_active  BOOL  the product is on sale                      (Django)
    creds           M     {client_id: N secret_version} of the
                          customer's unrevoked credentials, and
                          {key id: N 0} of its unrevoked API keys
                          that open this product                      (Django)
    version         N     balance + customer + product versions:
                          a write lands only if its version is higher (Django)
    used            N     credits spent at the gate                   (authorizer only;
                          Django sets it only on a new item, with if_not_exists(used, :u),
                          :u = the usage Postgres has recorded (0 for a new balance), so an
                          item recreated from Postgres does not hand out spent credits again)
    spent0..spent3  S     the stamps of the item's last four spends,  (authorizer only;
                          newest first: `<ms sent, 13 digits> <16 hex>`,
                          one per decision ("-": no spend yet). A spend
                          writes its own into spent0 and shifts the rest
                          down, under the condition that its stamp is in
                          none of them: sent again after its answer was
                          lost, it cannot spend twice, and the item it
                          fails on shows it was charged (authorizer/gate.py;
                          Django never writes, reads or compares them)

Route item, one per API Gateway API id:
    pk = "API#<api id>", sk = "ROUTE"
    product         S     the product slug the API serves
    routes          M     {"METHOD /path": N cost}: the product's route
                          prices (authorizer/routes.py: `ANY`, {param},
                          {proxy+}; the most specific match wins; no
                          match: the balance item's `cost`)           (Django)
    version         N     the product's version                       (Django)

Key item, one per API key (revoked ones too):
    pk = "KEY#<sha256 of the key, hex>", sk = "KEY"
    key_id          S     the key's public id (its entry in `creds`)  (Django)
    customer        S     the customer's public id                    (Django)
    products        L     of S: the products it opens; empty: all of
                          the customer's                              (Django)
    revoked         BOOL  revoked: the gate denies without spending   (Django)
    version         N     1, then 2 once revoked                      (Django)
The gate reads it once per key and remembers it briefly (authorizer/keys.py); what it
remembers cannot outlive a revocation, because the spend's condition reads `creds`.

Django writes with `SET ... used = if_not_exists(used, :u)` under the
condition `attribute_not_exists(version) OR version < :v`; the authorizer
spends with one `UpdateItem`: `SET used = used + cost` under the condition
that the customer and product are active, the token's credential version is
the one in `creds`, and `used <= ceiling`; for a priced route of cost c,
`SET used = used + :c` under the same checks and `used <= ceilings.<c>`, and for
a free route (cost 0) the same checks alone. Every spend also shifts its stamp into
`spent0..spent3` under the condition that it is not there yet (see gate.py, "A lost answer").

Route prices change at the gate once its cached route item expires (AUTHORIZER_ROUTE_TTL): a
cached cost the balance item has no ceiling for any more makes the gate read the route item again
(authorizer/gate.py), and a call is denied `prices_changing` while the two disagree.

Keys here are in the low-level (typed) form that botocore clients take.
"""

# An item's key as botocore takes it: {"pk": {"S": ...}, "sk": {"S": ...}}.
Key = dict[str, dict[str, str]]

PK = "pk"
SK = "sk"

GRANTED = "granted"
USED = "used"
COST = "cost"
CEILING = "ceiling"
CEILINGS = "ceilings"
ROUTES = "routes"
ACTIVE = "active"
PRODUCT_ACTIVE = "product_active"
CREDS = "creds"
VERSION = "version"
PRODUCT = "product"
KEY_ID = "key_id"
CUSTOMER = "customer"
PRODUCTS = "products"
REVOKED = "revoked"
# The stamps of a balance item's last spends, newest first (the authorizer's, like `used`).
SPENT = ("spent0", "spent1", "spent2", "spent3")

# Key shapes.
CUSTOMER_PREFIX = "CUSTOMER#"  # balance item pk: CUSTOMER#<customer public id>
PRODUCT_PREFIX = "PRODUCT#"  # balance item sk: PRODUCT#<product slug>
API_PREFIX = "API#"  # route item pk: API#<api id>
ROUTE_SK = "ROUTE"  # route item sk
KEY_PREFIX = "KEY#"  # key item pk: KEY#<sha256 of the key, hex>
KEY_SK = "KEY"  # key item sk

# What Django owns and writes, in this order (everything but `used` and `spent*`, which are the authorizer's).
BALANCE_OWNED = (GRANTED, COST, CEILING, CEILINGS, ACTIVE, PRODUCT_ACTIVE, CREDS, VERSION)
ROUTE_OWNED = (PRODUCT, ROUTES, VERSION)
KEY_OWNED = (KEY_ID, CUSTOMER, PRODUCTS, REVOKED, VERSION)

TABLE_DEFINITION = {
    "KeySchema": [{"AttributeName": PK, "KeyType": "HASH"}, {"AttributeName": SK, "KeyType": "RANGE"}],
    "AttributeDefinitions": [{"AttributeName": PK, "AttributeType": "S"}, {"AttributeName": SK, "AttributeType": "S"}],
    "BillingMode": "PAY_PER_REQUEST",
}


def balance_key(customer_id: str, product: str) -> Key:
    return {PK: {"S": f"{CUSTOMER_PREFIX}{customer_id}"}, SK: {"S": f"{PRODUCT_PREFIX}{product}"}}


def route_key(api_id: str) -> Key:
    return {PK: {"S": f"{API_PREFIX}{api_id}"}, SK: {"S": ROUTE_SK}}


def key_key(hashed: str) -> Key:
    return {PK: {"S": f"{KEY_PREFIX}{hashed}"}, SK: {"S": KEY_SK}}
