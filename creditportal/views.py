from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe


@require_safe
def health(request: HttpRequest) -> JsonResponse:
    """`GET /api/health/`: the process answers. No database, for load balancers
    and as the baseline of bench/api_throughput.py."""
    return JsonResponse({"status": "ok"})
