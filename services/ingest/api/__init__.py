"""The ingest's HTTP API: carrier webhooks (``webhooks``), sellers' shipment confirmations
(``shipments``), what both read and answer with (``edge``) and the body schemas of the
routes that read raw bodies (``openapi``)."""
