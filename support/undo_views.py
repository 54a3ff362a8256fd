"""The undo page: what undoing a staff fix will do (or why it cannot be undone), a required reason,
then support/undo.py."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from audit.models import AuditEntry
from billing.staff import StaffActionError

from .undo import UndoRefused, entry_undo, undo_plan


class UndoForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
                             help_text="Required. Why this fix is undone; kept in the audit log with your name.")


@staff_member_required
def undo(request, entry_id: int):
    """GET: the confirmation page; POST: undo, then back to the subscription."""
    if not request.user.has_perm("billing.change_subscription"):  # the permission of the fixes themselves
        raise PermissionDenied
    entry = get_object_or_404(AuditEntry.objects.select_related("subscriber"), pk=entry_id)
    form = UndoForm(request.POST or None)
    refused, plan = "", None
    try:
        plan = undo_plan(entry)
    except UndoRefused as exc:
        refused = str(exc)
    if request.method == "POST" and plan is not None and form.is_valid():
        try:
            done = entry_undo(entry_id=entry.pk, reason=form.cleaned_data["reason"], staff_user=request.user)
        except (UndoRefused, StaffActionError) as exc:
            refused = str(exc)
        else:
            messages.success(request, f"Undone: {plan.description} (audit entry #{done.pk}).")
            return redirect(reverse("admin:billing_subscription_change", args=[entry.subscription_id]))
    context = {**admin.site.each_context(request), "title": f"Undo {entry.action.replace('_', ' ')}",
               "entry": entry, "plan": plan, "refused": refused, "form": form}
    return TemplateResponse(request, "admin/support/undo.html", context, status=409 if refused and
                            request.method == "POST" else 200)
