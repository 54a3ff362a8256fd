"""Who is calling the API: a service (an API key with scopes), an app's end user (a JWT), or an
anonymous caller from a trusted internal network (the check API only)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    kind: str  # SERVICE, END_USER or NETWORK
    name: str  # the key's name, "user <id>", or the caller's address
    scopes: frozenset[str] = frozenset()
    user_id: str | None = None  # end users: the app's user id from the token
    api_key_id: int | None = None

    SERVICE = "service"
    END_USER = "end_user"
    NETWORK = "network"

    # DRF and Django read these on request.user.
    is_authenticated = True
    is_anonymous = False

    @property
    def is_service(self) -> bool:
        return self.kind == self.SERVICE

    @property
    def is_end_user(self) -> bool:
        return self.kind == self.END_USER

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def __str__(self):
        return f"{self.kind}:{self.name}"
