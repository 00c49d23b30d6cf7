"""Integrations: outgoing webhooks (Kabar → the business's own systems), signed, retried, never lost."""
