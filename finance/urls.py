"""Finance's routes: the API for BI tools and the dashboard (under admin/, before the admin's catch-all)."""

from django.urls import path

from .api import TransactionExportApi
from .api_metrics import FinanceMetricsApi
from .dashboard import dashboard

urlpatterns = [
    path("api/finance/transactions", TransactionExportApi.as_view(), name="finance-transactions"),
    path("api/finance/metrics", FinanceMetricsApi.as_view(), name="finance-metrics"),
    # Under admin/ (its look, its login), before the admin's catch-all in config/urls.py.
    path("admin/finance/dashboard/", dashboard, name="finance-dashboard"),
]
