"""What a seller can do about a package, in English, keyed by reason (the notifier words
its own per language from the reason)."""

from __future__ import annotations

from shared.schemas import Reason

NOTHING_TO_DO = "Nothing to do: the tracking is valid."

ADVICE: dict[Reason, str] = {
    Reason.CARRIER_NOT_INTEGRATED: (
        "The carrier name on the shipping confirmation is not a carrier Amazon integrates for this marketplace. "
        "Correct it to the exact integrated carrier name, or ship with an integrated carrier."
    ),
    Reason.NO_PHYSICAL_SCAN: (
        "The carrier recorded no physical scan before the promised date. Check the tracking number on the "
        "confirmation and ask the carrier to scan the parcel; a late scan still counts."
    ),
    Reason.MISSING_DELIVERY_SCAN: (
        "This order needs full tracking (value at or above the marketplace threshold) and has no delivery or "
        "delivery-attempt scan. Ask the carrier for the delivery scan; a late scan still counts."
    ),
    Reason.SERVICE_LACKS_DELIVERY_SCAN: (
        "The shipping service never records a delivery scan, so this order cannot get full tracking. "
        "Use a service with delivery scans for orders at or above the threshold."
    ),
    Reason.MALFORMED_TRACKING_NUMBER: (
        "The tracking number does not look valid for this carrier. Check it and correct it on the shipping "
        "confirmation in Seller Central."
    ),
    Reason.AWAITING_FIRST_SCAN: (
        "No physical scan yet. Make sure the parcel was handed to the carrier and scanned at acceptance "
        "before the promised date."
    ),
    Reason.OVERDUE_FIRST_SCAN: (
        "No carrier scan several days after confirmation: check that the carrier picked the parcel up and "
        "that the tracking number uploaded to Amazon is the right one."
    ),
    Reason.AWAITING_DELIVERY_SCAN: (
        "Full tracking is required: the parcel still needs a delivery or delivery-attempt scan before the "
        "promised date. Follow up with the carrier."
    ),
    Reason.STALLED_IN_TRANSIT: (
        "The parcel was scanned, then nothing for much longer than this lane usually takes between scans. "
        "Ask the carrier where it is before the promised date passes."
    ),
    Reason.CARRIER_SILENT: (
        "The carrier has sent far fewer scans than usual for every seller, not only for you. Scans may "
        "arrive late; if the silence lasts, ask the carrier and consider another carrier for new orders."
    ),
    Reason.SERVICE_RARELY_SCANS_DELIVERY: (
        "Recent parcels of this shipping service almost never got a delivery scan, so orders at or above "
        "the threshold are unlikely to get full tracking. Use a service with delivery scans for them."
    ),
    Reason.TRACKING_STOPPED: (
        "The tracking aggregator stopped tracking this number, so no more scans will reach vtrwatch. "
        "Register the number with the aggregator again."
    ),
    Reason.CANCELLED: "Cancelled orders do not count towards VTR; nothing to do.",
}


def advice_for(reason: Reason | None) -> str:
    return NOTHING_TO_DO if reason is None else ADVICE[reason]
