"""Phone numbers: one canonical form (E.164) for every input shape, default region Indonesia.

``0812…``, ``62812…``, ``+62 812…`` and WhatsApp's ``62812…`` are the same person; foreign numbers
keep their own country. All parsing goes through the ``phonenumbers`` library.
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers

DEFAULT_REGION = "ID"
_DIGITS = re.compile(r"\d")


class InvalidPhone(ValueError):
    pass


@lru_cache(maxsize=65536)
def to_e164(raw: str, region: str = DEFAULT_REGION) -> str:
    """Canonical ``+<country><number>``; raises ``InvalidPhone`` when it cannot be a phone number."""
    text = (raw or "").strip()
    if not text or len(text) > 64:
        raise InvalidPhone("phone is empty or too long")
    digits = "".join(_DIGITS.findall(text))
    if len(digits) < 6:
        raise InvalidPhone("phone has too few digits")
    candidate = text
    if region == "ID" and digits.startswith("8") and not text.startswith("+"):
        # "812 3456 7890" on an Indonesian form is a mobile number missing its leading 0.
        local = phonenumbers.parse("0" + digits, region)
        if phonenumbers.is_valid_number(local):
            return phonenumbers.format_number(local, phonenumbers.PhoneNumberFormat.E164)
    if not text.startswith("+") and not text.startswith("0"):
        # WhatsApp ids and many spreadsheets drop the '+': "6281234..." or "14155552671".
        candidate = "+" + digits
        try:
            parsed = phonenumbers.parse(candidate, None)
            if phonenumbers.is_possible_number(parsed):
                return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        except phonenumbers.NumberParseException:
            pass
        candidate = text
    try:
        parsed = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"not a phone number: {exc}") from exc
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidPhone("not a possible phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def from_wa_id(wa: str) -> str:
    """A WhatsApp ``wa_id``/``from`` always carries its country code: ``"+" + digits``."""
    digits = "".join(_DIGITS.findall(wa or ""))
    if len(digits) < 6 or len(digits) > 15:
        raise InvalidPhone(f"not a WhatsApp id: {wa!r}")
    return to_e164("+" + digits)


def wa_id(e164: str) -> str:
    """WhatsApp's recipient form: digits without '+'."""
    return e164.lstrip("+")
