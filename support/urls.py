from django.urls import path

from . import views
from .undo_views import undo

urlpatterns = [
    path("admin/support/undo/<int:entry_id>/", undo, name="support-undo"),
    path("admin/support/subscribers/<int:subscriber_id>/notes/", views.note_add_view, name="support-note-add"),
]
