"""Links beside a changelist's "Add" button that act on the list as filtered (finance's "Export CSV").
The apps above billing add theirs in their AppConfig.ready (billing never imports them): each tool is a
view given the ModelAdmin and the request, reached with the changelist's own query string, so that
`model_admin.get_changelist_instance(request).get_queryset(request)` is exactly the rows listed."""

from collections.abc import Callable
from dataclasses import dataclass

from django.urls import path, reverse


@dataclass(frozen=True)
class ChangelistTool:
    slug: str  # the URL under the changelist: <changelist>/<slug>/
    label: str
    view: Callable  # view(model_admin, request) -> HttpResponse
    permission: str  # "app_label.codename": who sees the link and may call the view


class ChangelistToolsMixin:
    """Links rendered by templates/admin/change_list_object_tools.html, so a list keeps its own template."""

    changelist_tools: list[ChangelistTool] = []  # a list per admin class, appended by apps above billing

    def _tool_url_name(self, tool: ChangelistTool) -> str:
        opts = self.model._meta
        return f"{opts.app_label}_{opts.model_name}_{tool.slug.replace('-', '_')}"

    def get_urls(self):
        tools = [path(f"{tool.slug}/", self.admin_site.admin_view(self._tool_view(tool)),
                      name=self._tool_url_name(tool)) for tool in self.changelist_tools]
        return tools + super().get_urls()

    def _tool_view(self, tool: ChangelistTool):
        def view(request):
            return tool.view(self, request)

        return view

    def changelist_view(self, request, extra_context=None):
        links = [{"label": tool.label, "url": reverse(f"{self.admin_site.name}:{self._tool_url_name(tool)}")}
                 for tool in self.changelist_tools if request.user.has_perm(tool.permission)]
        return super().changelist_view(request, {**(extra_context or {}), "changelist_tools": links})
