"""The scorer's pure domain: no I/O."""
