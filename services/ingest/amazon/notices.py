"""A connection's change as the rest of vtrwatch sees it: an ``AmazonConnectionChanged``
notice on ``vtr.amazon-vtr.v1`` (key: seller id), published with the state record that
makes the change. The notifier keeps every notice in the audit trail (who, when, which
seller, what changed) and tells the seller to reconnect on ``reconnect_needed``. A
notice names the selling partner, the region and how the connection was made, never a
token (docs/security.md, "Audit trail")."""

from __future__ import annotations

from services.ingest.amazon.state import CONNECTED, DISCONNECTED, Connection
from services.ingest.publisher import Record
from shared.schemas import AMAZON_CODEC, AmazonConnectionChanged
from shared.topics import AMAZON_VTR

#: ``by`` of a change an operator made with ``python -m services.ingest amazon ...``.
OPERATOR = "operator"
#: ``by`` of the seller's consent in Seller Central (the callback) and of Amazon refusing
#: an authorisation (the worker).
AMAZON = "amazon"


def connection_changed(connection: Connection, by: str, reason: str = "") -> Record:
    """The notice of ``connection`` just written: connected if it holds a token, else disconnected."""
    notice = AmazonConnectionChanged(
        seller_id=connection.seller_id,
        region=connection.region,
        state=CONNECTED if connection.sealed is not None else DISCONNECTED,
        reason=reason,
        changed_at=connection.changed_at,
        by=by,
        via=connection.via,
        selling_partner_id=connection.selling_partner_id,
    )
    return Record(AMAZON_VTR, connection.seller_id.encode(), AMAZON_CODEC.encode(notice))
