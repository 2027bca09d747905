"""Request body parsers for the API: DRF's own, answering a 400 where theirs let an error
through as a 500 (found by the attack tests, tests/test_attacks_webhook.py)."""

import codecs

from django.conf import settings
from django.core.exceptions import TooManyFieldsSent
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils import json


def _object_once(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object whose keys are each sent once: Python's json would keep the last of a
    repeated key ({"quantity": 1, "quantity": 1000000} would grant a million)."""
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"{key} is sent more than once")
        obj[key] = value
    return obj


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser (its strict floats and error text), and also: a key repeated in any
    object is a parse error naming it; JSON nested deeper than Python's recursion limit (a few
    KB of `[`) raises RecursionError, which DRF does not catch: here it is a parse error."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        parse_constant = json.strict_constant if self.strict else None
        try:
            return json.load(
                codecs.getreader(encoding)(stream), parse_constant=parse_constant, object_pairs_hook=_object_once
            )
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


class FormParser(parsers.FormParser):
    """DRF's form parser. More fields than DATA_UPLOAD_MAX_NUMBER_FIELDS is a parse error in
    JSON like every other one, not Django's bare HTML 400 page."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except TooManyFieldsSent:
            raise ParseError("Form parse error - the body has too many fields.") from None
