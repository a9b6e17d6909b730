"""User input echoed in messages, kept readable: a 100,000-character name or a 400-digit number
is shown by its start, its end and its length, never in full (standard library only)."""
from __future__ import annotations

#: Characters of a value's repr shown in a message.
LIMIT = 80
#: Characters of a whole error message printed by the tools.
MESSAGE_LIMIT = 4000


def echo(value, limit: int = LIMIT) -> str:
    """``repr(value)``, shortened to about ``limit`` characters."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 3 * limit:
        # repr of an int over 4300 digits raises; a huge one says nothing digit by digit
        digits = int(value.bit_length() * 0.30103) + 1
        return f"<{'a negative' if value < 0 else 'an'} integer of about {digits} digits>"
    try:
        return clip(repr(value), limit)
    except ValueError:  # e.g. a container holding an int past Python's 4300-digit limit
        return f"<a {type(value).__name__} too large to show>"


def clip(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` with its middle cut out when longer than ``limit``, saying how much was cut."""
    if len(text) <= limit:
        return text
    head, tail = limit * 2 // 3, limit // 3
    return f"{text[:head]}...[{len(text) - head - tail} characters]...{text[-tail:]}"
