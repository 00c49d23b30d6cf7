"""ARI, the AI receptionist: answers, qualifies, scores, books and hands off WhatsApp leads.

Pure pipeline steps (``extract``, ``scoring``, ``routing``, ``booking``, ``dates``, ``state``,
``pipeline``, ``prompt``, ``rules``) take everything they need as arguments, "now" included, so
they are tested without a database or a clock. ``service`` does the I/O around them; ``llm`` talks
to any OpenAI-compatible endpoint.
"""
