"""The support console's pages outside the model admins."""

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.models import Subscriber

from .notes import NOTE_MAX_LENGTH, note_add


@staff_member_required
@require_POST
def note_add_view(request, subscriber_id: int):
    """A staff note on a subscriber, from the form on its timeline; back to the timeline."""
    if not request.user.has_perm("audit.add_note"):
        raise PermissionDenied
    subscriber = get_object_or_404(Subscriber, pk=subscriber_id)
    text = request.POST.get("text", "").strip()
    back = reverse("admin:accounts_subscriber_change", args=[subscriber.pk]) + "#timeline"
    if not text:
        messages.error(request, "A note needs some text.")
    elif len(text) > NOTE_MAX_LENGTH:
        messages.error(request, f"A note holds at most {NOTE_MAX_LENGTH} characters; this one has {len(text)}.")
    else:
        note_add(subscriber=subscriber, author=request.user, text=text)
        messages.success(request, "Note added to the timeline.")
    return redirect(back)
