"""Who may do what: the three kinds of key and the scopes a key carries. Pure data."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class KeyKind(StrEnum):
    #: Bound to one seller id: sees that seller only.
    SELLER = "seller"
    #: vtrwatch staff: every seller, with the scopes it was issued.
    STAFF = "staff"
    #: The services' own calls to each other (the notifier reading the scorer): every seller.
    SERVICE = "service"


class Scope(StrEnum):
    SHIPMENTS_WRITE = "shipments:write"
    SCORES_READ = "scores:read"
    SUBSCRIPTIONS_WRITE = "subscriptions:write"
    NOTIFICATIONS_READ = "notifications:read"
    CONSOLE_READ = "console:read"
    AUDIT_READ = "audit:read"
    #: Every other scope. Only staff keys may hold it.
    ADMIN = "admin"


#: What each scope opens (docs/security.md renders the same table route by route).
SCOPE_MEANINGS: dict[Scope, str] = {
    Scope.SHIPMENTS_WRITE: "confirm and cancel shipments (ingest)",
    Scope.SCORES_READ: "read VTR, forecasts and the packages behind them (scorer)",
    Scope.SUBSCRIPTIONS_WRITE: "create, replace and delete the alert subscription (notifier)",
    Scope.NOTIFICATIONS_READ: "read the subscription and the notifications sent (notifier)",
    Scope.CONSOLE_READ: "open the console and its exports with the key (scorer)",
    Scope.AUDIT_READ: "read the audit trail (notifier)",
    Scope.ADMIN: "every scope above (staff keys only)",
}

_ADMIN = Scope.ADMIN.value

#: A staff key issued without ``--scope``: everything but ``admin``.
DEFAULT_STAFF_SCOPES = frozenset(scope for scope in Scope if scope is not Scope.ADMIN)
EVERY_SCOPE = frozenset(Scope)


@dataclass(frozen=True, slots=True)
class Principal:
    """The holder of a key that checked out, as the routes see it (never the token)."""

    key_id: str
    kind: KeyKind
    #: The one seller a seller key sees; None for staff and service keys (every seller).
    seller_id: str | None
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        """``scope`` as its plain value: a str hashes in C, an enum member in Python."""
        return scope in self.scopes or _ADMIN in self.scopes

    def sees(self, seller_id: str) -> bool:
        return self.seller_id is None or self.seller_id == seller_id


def scope_problem(kind: KeyKind, scopes: frozenset[str]) -> str | None:
    """Why a key of ``kind`` may not carry ``scopes`` (None if it may)."""
    unknown = sorted(scopes - {scope.value for scope in Scope})
    if unknown:
        return f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(Scope)}"
    if not scopes:
        return "a key needs at least one scope"
    if Scope.ADMIN in scopes and kind is not KeyKind.STAFF:
        return "only staff keys may hold the admin scope"
    return None
