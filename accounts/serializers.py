"""The token request's parameters (RFC 6749 section 4.4.2), form-encoded or JSON."""

from django.http import QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

GRANT_TYPE = "client_credentials"
_REPEATED = object()


@extend_schema_field(OpenApiTypes.STR)
class Parameter(serializers.Field):
    """One token request parameter: a string, sent once. Empty counts as omitted (RFC 6749 section 3.1)."""

    default_error_messages = {
        "repeated": "{name} is sent more than once.",
        "not_string": "{name} must be a string.",
        "not_text": "{name} is not valid text.",
    }

    def __init__(self) -> None:
        super().__init__(required=False, allow_null=True)

    def get_value(self, dictionary):
        if isinstance(dictionary, QueryDict) and len(dictionary.getlist(self.field_name)) > 1:
            return _REPEATED  # a QueryDict would hand over the last one
        return super().get_value(dictionary)

    def to_internal_value(self, data) -> str | None:
        if data is _REPEATED:
            self.fail("repeated", name=self.field_name)
        if data == "":
            return None
        if not isinstance(data, str):
            self.fail("not_string", name=self.field_name)
        try:
            data.encode()
        except UnicodeEncodeError:  # a lone surrogate, which JSON can carry
            self.fail("not_text", name=self.field_name)
        return data

    def to_representation(self, value):
        return value


class TokenRequestSerializer(serializers.Serializer):
    """grant_type, scope, and the client credentials if they come in the body (checked here for their
    form; ClientCredentialsAuthentication reads them). Unknown parameters are ignored. The error codes are
    RFC 6749's (`unsupported_grant_type`; the rest are `invalid_request`): `OAuthError.from_validation`."""

    default_error_messages = {"invalid": "The JSON body must be an object."}

    grant_type = Parameter()
    client_id = Parameter()
    client_secret = Parameter()
    scope = Parameter()

    class Meta:
        ref_name = "TokenRequest"

    def validate_scope(self, value: str | None) -> list[str] | None:
        return None if value is None else [slug for slug in value.split(" ") if slug]

    def validate(self, attrs: dict) -> dict:
        grant_type = attrs.get("grant_type")
        if grant_type is None:
            raise serializers.ValidationError(
                {"grant_type": f"grant_type is missing: send grant_type={GRANT_TYPE}."}, code="invalid_request"
            )
        if grant_type != GRANT_TYPE:
            raise serializers.ValidationError(
                {"grant_type": f"Only grant_type={GRANT_TYPE} is supported here."}, code="unsupported_grant_type"
            )
        return attrs


class TokenResponseSerializer(serializers.Serializer):
    """What POST /api/token/ answers (RFC 6749 section 5.1)."""

    access_token = serializers.CharField(help_text="A signed JWT (ES256 or RS256): docs/api.md, 'The token'.")
    token_type = serializers.ChoiceField(choices=["Bearer"])
    expires_in = serializers.IntegerField(help_text="Seconds: 300.")
    scope = serializers.CharField(help_text="The product slugs it covers, separated by spaces.")

    class Meta:
        ref_name = "TokenResponse"
