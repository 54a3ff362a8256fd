from django.urls import path

from . import dashboard

urlpatterns = [
    # Under admin/ (its look, its login), before the admin's catch-all in config/urls.py.
    path("admin/finance/dashboard/", dashboard.dashboard, name="finance-dashboard"),
]
