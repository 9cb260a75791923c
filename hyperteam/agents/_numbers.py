"""Canonical text for numeric answers, so that ``1,000.0``, ``$1000`` and ``1000`` compare equal."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

# No exponent notation: answers are written the way people write them, and
# rejecting "1e999999" keeps Decimal -> int conversion bounded.
_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")


def normalize_number(value: str | int | float | None) -> str | None:
    """Returns the canonical text of a number, or None when ``value`` is not one.

    Commas, a leading ``$``, surrounding whitespace and a trailing ``.`` are
    dropped; integral values lose their fractional part; other values lose
    trailing zeros. Floats (such as JSON targets) are rounded to 12
    significant digits to hide binary noise (``0.1 + 0.2`` gives ``0.3``).

    Args:
        value: the text of a number (or an int or float).

    Returns:
        The canonical text, e.g. ``"1000"``, ``"-3.5"``, or None.

    Example:
        >>> normalize_number("1,000.0"), normalize_number("$18"), normalize_number("-3.50")
        ('1000', '18', '-3.5')
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer():
            return str(int(value))
        return _canonical(Decimal(format(value, ".12g")))
    text = value.strip().replace(",", "")
    # The currency sign may sit on either side of a minus sign ("-$5", "$-5").
    text = text.replace("$", "")
    if text.endswith("."):
        text = text[:-1]
    if not _PLAIN_NUMBER.fullmatch(text):
        return None
    try:
        return _canonical(Decimal(text))
    except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
        return None


def _canonical(number: Decimal) -> str:
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")
