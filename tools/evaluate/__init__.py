"""``make evaluate``: how early and how right the warnings are, on seeded scenario families
with a ground truth the scorer never sees (docs/forecast.md)."""
