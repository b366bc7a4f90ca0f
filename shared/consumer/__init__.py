"""Exactly-once consumption into a database: each fetched batch is applied in one
transaction that also stores the consumer's offsets (see ``consumer.py`` for the whole
story and ``commit.py`` for the commit order, step by step).

The modules, one concern each:

- ``offsets``: the offsets table and every statement on it (claim, fenced write, read, move);
- ``offsets_command``: ``python -m services.<name> offsets show|reset``;
- ``buffer``: fetched records not applied yet, and how the next batch is cut from them;
- ``partition``: what the consumer knows about each partition it owns or gave up;
- ``context``: what the parts below share (client, partitions, buffer, lock, counters);
- ``fetch``: topping up the buffer, cutting batches (plan ahead included), gap checks;
- ``commit``: the commit order;
- ``failures``: retries, isolating a bad record, parking it on the dead-letter topic;
- ``upkeep``: reclaims, stalled fetches, offset range checks (between batches);
- ``rebalance``: claims on assignment, revocations, giving up fenced partitions;
- ``consumer``: ``TransactionalConsumer``, the lifecycle and the consuming loop.
"""
