from django.urls import path

from . import api_metrics

urlpatterns = []
urlpatterns.append(path("api/finance/metrics", api_metrics.FinanceMetricsApi.as_view(), name="finance-metrics"))
