"""Request body parsers for the API: DRF's own, answering a 400 where theirs let an error
through as a 500 (found by the attack tests, tests/test_attacks_webhook.py)."""

from django.core.exceptions import TooManyFieldsSent
from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser. JSON nested deeper than Python's recursion limit (a few KB of `[`)
    raises RecursionError, which DRF does not catch: here it is a parse error."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None


class FormParser(parsers.FormParser):
    """DRF's form parser. More fields than DATA_UPLOAD_MAX_NUMBER_FIELDS is a parse error in
    JSON like every other one, not Django's bare HTML 400 page."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except TooManyFieldsSent:
            raise ParseError("Form parse error - the body has too many fields.") from None
