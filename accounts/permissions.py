"""Who may do what. Services need the endpoint's scope; end users may act only on their own data."""

from functools import wraps

from django.http import JsonResponse
from rest_framework import permissions

from config.api_errors import ApiError, error_body

from .networks import is_trusted_request
from .principals import Principal

SCOPES = ("check", "read", "verify", "manage", "finance")


def _principal(request) -> Principal | None:
    user = getattr(request, "user", None)
    return user if isinstance(user, Principal) else None


class _ScopeOrEndUser(permissions.BasePermission):
    """A service key with `scope`, or an end user (whose data is then limited to their own)."""

    scope = ""
    allow_end_users = True

    def has_permission(self, request, view):
        principal = _principal(request)
        if principal is None:
            return False
        if principal.is_service:
            if not principal.has_scope(self.scope):
                self.message = f"This API key lacks the '{self.scope}' scope."
                return False
            return True
        if principal.is_end_user and self.allow_end_users:
            return True
        self.message = f"A service API key with the '{self.scope}' scope is required."
        return False


def is_trusted_network_or_staff(request) -> bool:
    """A caller inside CHECK_API_TRUSTED_NETWORKS (judged through TRUSTED_PROXIES), or a signed-in active
    staff member (the admin's session): who may read /health's details and the API schema and docs."""
    django_request = getattr(request, "_request", request)  # DRF wraps Django's request
    if is_trusted_request(django_request.META):
        return True
    # The admin session's user (AuthenticationMiddleware's, lazy): read only when needed (a query).
    user = getattr(django_request, "user", None)
    return bool(user is not None and user.is_active and getattr(user, "is_staff", False))


def trusted_network_or_staff_only(view):
    """A Django view (also a DRF view's as_view()) answered only to trusted networks and staff; others get
    403 in the API's error shape, whatever the view's own renderer (YAML, HTML) would make of it."""

    @wraps(view)
    def guarded(request, *args, **kwargs):
        if not is_trusted_network_or_staff(request):
            return JsonResponse(error_body("permission_denied", "Only trusted networks (CHECK_API_TRUSTED_NETWORKS) "
                                                                "and signed-in staff may read this."), status=403)
        return view(request, *args, **kwargs)

    return guarded


def scope_or_end_user(scope: str, *, end_users: bool = True) -> type[permissions.BasePermission]:
    """A DRF permission class: services need `scope`; end users are let in when `end_users`."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    return type(f"Scope_{scope}", (_ScopeOrEndUser,), {"scope": scope, "allow_end_users": end_users})


CanCheck = scope_or_end_user("check")
CanRead = scope_or_end_user("read")
CanVerify = scope_or_end_user("verify")
CanManage = scope_or_end_user("manage")
CanExportFinance = scope_or_end_user("finance", end_users=False)  # BI tools; never end users


def acting_user_id(principal: Principal, given: str | None, *, required_for_services: bool = True) -> str:
    """The user an operation is about. End users: their token's id (a given `user_id` may be omitted and
    must match). Services: the given `user_id` (required)."""
    given = None if given in (None, "") else str(given)
    if principal.is_end_user:
        if given is not None and given != principal.user_id:
            raise ApiError("user_id does not match the signed-in user.", code="user_mismatch", status_code=403)
        return principal.user_id
    if given is None and required_for_services:
        raise ApiError("user_id is required.", code="invalid", status_code=400)
    return given


def may_see_user(principal: Principal | None, user_id: str, *, scope: str) -> bool:
    """Whether a principal may read `user_id`'s data: the user themself, or a service with `scope`."""
    if principal is None:
        return False
    if principal.is_end_user:
        return principal.user_id == str(user_id)
    if principal.is_service:
        return principal.has_scope(scope)
    return False
