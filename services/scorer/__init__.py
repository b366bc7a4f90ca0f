"""The scorer: rolling 30-day VTR per seller x marketplace x category, with a forecast."""
