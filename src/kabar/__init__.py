"""Kabar: a fast, lossless, live-updating WhatsApp CRM and team inbox."""

__version__ = "0.1.0"
