"""The per-package model: the probability that a pending package's tracking becomes valid
before it is counted, learnt from the packages themselves. Pure: no I/O, no clock.

One concern per module: ``lanes`` (lane keys, milestones, the levels of the hierarchy),
``parameters`` (the settings), ``curves`` (censored survival histograms and curves),
``observations`` (what each package says), ``carrier_health`` (silent carriers across
sellers), ``state`` (what the model is built from and stored as), ``change`` (recent
change in the first scans: dead shares and pickup backlogs) and ``estimator`` (the
model: delivery clocks, silences and each package's probability). docs/forecast.md
explains the method.
"""
