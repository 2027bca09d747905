"""Staff's CSV downloads of the ledger entries and purchases lists, as filtered, streamed.

The list's own ChangeList turns the request's filters, search and sort into the queryset, so
the file holds exactly the rows the list would page through; they are read from a server-side
cursor 2,000 at a time and written as they come, so a million rows never sit in memory.
"""

import csv
import datetime
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseBadRequest, HttpResponseNotAllowed, StreamingHttpResponse
from django.urls import path
from django.utils import timezone

CHUNK = 2000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Column = tuple[str, Callable[[Any], Any]]


class _Echo:
    """A file that hands back what is written: csv.writer's row, as the next chunk of the response."""

    def write(self, value: str) -> str:
        return value


def cell(value: Any) -> Any:
    """A value as a CSV cell: times in UTC ISO 8601, None empty, and text a spreadsheet would run as
    a formula ("=HYPERLINK(…)" in a reason or a name) prefixed with ' so it stays text."""
    if value is None:
        return ""
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).isoformat()
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_rows(columns: list[Column], rows: Iterable[Any]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow([name for name, _ in columns])
    for row in rows:
        yield writer.writerow([cell(get(row)) for _, get in columns])


def csv_response(filename: str, columns: list[Column], rows: Iterable[Any]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(csv_rows(columns, rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


class CsvExportMixin:
    """A ModelAdmin's list as CSV at <list>/export.csv?<the list's query>: `csv_columns`, for view permission."""

    csv_columns: list[Column] = []
    csv_name = "export"

    def get_urls(self):
        opts = self.opts  # type: ignore[attr-defined]
        view = self.admin_site.admin_view(self.csv_export)  # type: ignore[attr-defined]
        return [path("export.csv", view, name=f"{opts.app_label}_{opts.model_name}_export"), *super().get_urls()]  # type: ignore[misc]

    def csv_export(self, request: HttpRequest):
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        if not self.has_view_permission(request):  # type: ignore[attr-defined]
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)  # type: ignore[attr-defined]
        except IncorrectLookupParameters:
            return HttpResponseBadRequest("These filters do not apply to this list.", content_type="text/plain")
        rows = changelist.get_queryset(request).iterator(chunk_size=CHUNK)
        stamp = timezone.now().astimezone(datetime.UTC).strftime("%Y%m%d-%H%M")
        return csv_response(f"{self.csv_name}-{stamp}.csv", self.csv_columns, rows)
