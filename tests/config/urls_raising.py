"""The project's URLs plus one view that fails, to see what a client gets from an uncaught error."""

from django.urls import path

from config.urls import handler400, handler404, handler500, urlpatterns  # noqa: F401  (Django reads the handlers)


def fails(request):
    raise RuntimeError("a bug")


urlpatterns = [path("api/fails", fails), *urlpatterns]
