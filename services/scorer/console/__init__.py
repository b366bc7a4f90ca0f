"""The seller console: read-only pages served by the scorer (see docs/console.md)."""
