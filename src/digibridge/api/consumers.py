"""Who calls the REST API: a consumer's identity and the scopes it was granted.

Kept apart from `auth.py` so the credential checkers (`api_keys.py`, `jwt_tokens.py`) can build
consumers without importing the request handling that uses them.
"""

from __future__ import annotations

from dataclasses import dataclass

SUBSCRIPTIONS_READ = "subscriptions:read"
SUBSCRIPTIONS_WRITE = "subscriptions:write"
EVENTS_READ = "events:read"
#: Scope that sees and manages every consumer's subscriptions and deliveries.
ADMIN_SCOPE = "deliveries:admin"
TERUGMELDINGEN_WRITE = "terugmeldingen:write"

#: Every scope digibridge knows; tokens may carry others, which are ignored.
ALL_SCOPES = frozenset(
    {SUBSCRIPTIONS_READ, SUBSCRIPTIONS_WRITE, EVENTS_READ, ADMIN_SCOPE, TERUGMELDINGEN_WRITE}
)
#: What a consumer that is not an operator needs: everything but the admin scope.
CONSUMER_SCOPES = ALL_SCOPES - {ADMIN_SCOPE}


@dataclass(frozen=True)
class Consumer:
    """Who is calling: an API key's name or an OAuth `client_id`, with the scopes granted."""

    id: str
    scopes: frozenset[str]

    @property
    def admin(self) -> bool:
        return ADMIN_SCOPE in self.scopes

    def owns(self, owner: str | None) -> bool:
        """Whether this consumer may see a resource owned by `owner` (None: admin only)."""
        return self.admin or (owner is not None and owner == self.id)


#: The caller on loopback when no keys and no OAuth are configured (the embedded default).
LOCAL_CONSUMER = Consumer(id="local", scopes=ALL_SCOPES)
