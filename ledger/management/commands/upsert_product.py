from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ledger.route_prices import route_prices_parse
from ledger.services import product_upsert


class Command(BaseCommand):
    help = (
        "Create a product or bring it to what is given; running it again changes nothing. "
        "--api-id, --sku and --variant-id, when given, replace the product's whole set; --route, when given, "
        "its whole route table (--no-routes: none, every call at --cost)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", required=True)
        parser.add_argument("--name", required=True)
        parser.add_argument("--api-id", dest="api_ids", action="append", metavar="ID", help="repeat for several")
        parser.add_argument(
            "--sku", dest="skus", action="append", metavar="SKU[:N]",
            help="a store SKU; :N sells N credits per unit (default 1); repeat for several",
        )  # fmt: skip
        parser.add_argument(
            "--variant-id", dest="variants", action="append", metavar="ID[:N]",
            help="a Shopify variant id; :N credits per unit (default 1); repeat for several",
        )  # fmt: skip
        parser.add_argument("--cost", dest="cost_per_call", type=int, help="credits per call (default 1)")
        routes = parser.add_mutually_exclusive_group()
        routes.add_argument(
            "--route",
            dest="routes",
            action="append",
            metavar="'METHOD /path=COST'",
            help="a route's own cost, e.g. 'POST /jobs=10', 'GET /health=0', 'ANY /files/{proxy+}=3'; repeat for several",
        )
        routes.add_argument("--no-routes", dest="routes", action="store_const", const=[], help="no route prices")
        state = parser.add_mutually_exclusive_group()
        state.add_argument("--active", dest="active", action="store_true", default=None)
        state.add_argument("--inactive", dest="active", action="store_false")
        refunds = parser.add_mutually_exclusive_group()
        refunds.add_argument(
            "--refund-failed-calls",
            dest="refund_failed_calls",
            action="store_true",
            default=None,
            help="credit back calls the API failed after an Allow (the default for a new product)",
        )
        refunds.add_argument("--no-refund-failed-calls", dest="refund_failed_calls", action="store_false")
        parser.add_argument(
            "--refund-statuses",
            metavar="STATUSES",
            help="the statuses credited back, within 500-599: numbers and ranges, e.g. 502-504 (default 500-599)",
        )

    def handle(
        self,
        *,
        slug: str,
        name: str,
        api_ids,
        skus,
        variants,
        cost_per_call,
        active,
        refund_failed_calls,
        refund_statuses,
        routes,
        **options,
    ) -> None:
        try:
            product, changed = product_upsert(
                slug=slug,
                name=name,
                api_ids=api_ids,
                skus=skus,
                variants=variants,
                cost_per_call=cost_per_call,
                active=active,
                refund_failed_calls=refund_failed_calls,
                refund_statuses=refund_statuses,
                routes=None if routes is None else route_prices_parse(routes),
            )
        except ValidationError as e:
            raise CommandError("; ".join(e.messages)) from e
        verb = "saved" if changed else "unchanged"
        self.stdout.write(f"product {product.slug}: {verb}")
