"""One module per push source: its pure parser (raw authenticated body -> canonical tracking
events), its verifier (signature, token, decryption) and its replies, declared as one
:class:`~services.ingest.carriers.source.Carrier` row.

No I/O here: each parser is a function of the bytes and the receive time, so every source
can be tested exhaustively without a server or broker. :data:`CARRIERS` is the table the
webhook routes, the OpenAPI document and the dead-letter replay iterate: a new carrier is a
module here and one row below.
"""

from __future__ import annotations

from services.ingest.carriers import aftership, china_post, seventeen_track, yanwen, yunexpress
from services.ingest.carriers.source import Carrier

CARRIERS: tuple[Carrier, ...] = (
    china_post.WEBHOOK,
    yunexpress.WEBHOOK,
    yanwen.WEBHOOK,
    seventeen_track.WEBHOOK,
    aftership.WEBHOOK,
)
