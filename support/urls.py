from django.urls import path

from . import views  # noqa: F401 (the timeline's pages)
from .undo_views import undo

urlpatterns = [
    path("admin/support/undo/<int:entry_id>/", undo, name="support-undo"),
]
