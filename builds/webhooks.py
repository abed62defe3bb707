"""Webhooks from Git hosts. Signed push events land with the Auto Build issue; until
then the endpoint exists, so `webhook_url` is real, and says plainly that it is not
accepting events yet."""

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST


@csrf_exempt
@require_POST
def receive(request, project: str, component: str):
    return JsonResponse(
        {"detail": "Webhook delivery is not implemented yet: auto build on commit is not available.", "errors": {}}, status=501
    )
