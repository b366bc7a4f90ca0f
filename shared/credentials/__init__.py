"""API keys: seller, staff and service keys with scopes, kept on a compacted Kafka topic
that every service follows into memory (docs/security.md).

- :mod:`~shared.credentials.tokens`: the token format, its hash, the topic's records;
- :mod:`~shared.credentials.scopes`: key kinds, scopes, the :class:`Principal` a route sees;
- :mod:`~shared.credentials.registry`: the keys one instance accepts, in memory;
- :mod:`~shared.credentials.follower`: keeps the registry current from the topic;
- :mod:`~shared.credentials.limits`: per-key token buckets;
- :mod:`~shared.credentials.access`: the FastAPI dependency every seller-scoped route uses;
- ``python -m shared.credentials``: the operator CLI (issue, revoke, list).
"""
