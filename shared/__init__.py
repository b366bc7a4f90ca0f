"""Contracts shared by the vtrwatch services: message schemas, topic names, the settings
base, and the Kafka, database, HTTP and metrics helpers every service uses.

This package holds no service logic.
"""
