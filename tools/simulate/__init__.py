"""A seeded traffic simulator for vtrwatch.

It builds a marketplace of sellers shipping from China (:mod:`.scenario`), knows the true
VTR of every seller x marketplace x category from its own reading of the domain rules
(:mod:`.truth`, deliberately independent of the scorer), renders every carrier scan in that
carrier's own signed webhook format (:mod:`.webhooks`) and drives the real HTTP APIs
(:mod:`.driver`).

    python -m tools.simulate --help
"""
