"""The scope every figure is kept per: seller x marketplace x category, declared once.

The widths below are the one declaration: the scorer's and the notifier's tables take
their scope columns from :mod:`shared.scope_columns` (SQLAlchemy column factories built on
these widths), and the scorer's field limits (a record that would not fit is refused, not
retried) take the same widths, so a width changes in one place. This module is pure data,
so domain code may import it without a database library.

**Marketplace width.** The truth is 2 characters: a marketplace is an ISO 3166-1 alpha-2
code (``CountryCode`` in :mod:`shared.schemas`, checked on every message that carries
one), and the scorer's tables and the notifier's ``amazon_statuses`` were created 2 wide.
The notifier's first tables were created 8 wide (its migration 0001) and are declared as
the database has them
(:data:`NOTIFIER_MARKETPLACE_WIDTH`): they only ever hold the 2-letter codes the scorer
publishes, and narrowing them would be a migration for no behaviour.
"""

from __future__ import annotations

SELLER_ID_LENGTH = 128
MARKETPLACE_LENGTH = 2
CATEGORY_LENGTH = 200
#: The notifier's marketplace columns as its migration 0001 created them (see above).
NOTIFIER_MARKETPLACE_WIDTH = 8
