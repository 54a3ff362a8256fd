"""The support console's pages outside the model admins."""

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpResponse


@staff_member_required
def undo(request, entry_id: int):
    """Undo a staff fix from its timeline entry (support/undo.py)."""
    return HttpResponse("Undo is not built yet.", status=501)
