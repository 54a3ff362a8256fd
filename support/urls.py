from django.urls import path

from . import views

urlpatterns = [
    path("admin/support/undo/<int:entry_id>/", views.undo, name="support-undo"),
]
