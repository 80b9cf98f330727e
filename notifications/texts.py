"""Generated text made to fit where it goes: a column's length, a header's single line.

Titles, subjects and names are built from names the firms typed (a client, a document
type, a person); at their maximum lengths they overflow the columns that hold them,
and line separators in them would break an email header. Pure functions.
"""

from __future__ import annotations

import re
import unicodedata

ELLIPSIS = "…"
# Everything str.splitlines() breaks on: CR, LF, VT, FF, FS, GS, RS, NEL, LS and PS.
# The email package refuses each of them in a header value.
LINE_SEPARATORS = re.compile("\r\n|[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# Characters that belong to the one before them: cutting before one would leave half a
# letter (a base without its accent) or half an emoji sequence.
_JOINERS = frozenset({"\u200d", "\ufe0e", "\ufe0f"})


def _continues(text: str, index: int) -> bool:
    char = text[index]
    return bool(unicodedata.combining(char)) or char in _JOINERS or (index > 0 and text[index - 1] == "\u200d")


def text_fit(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its start and an ellipsis.

    Cut at a character boundary: never between a letter and its combining marks, nor
    inside a joined emoji sequence; no space is left before the ellipsis.
    """
    if len(text) <= limit:
        return text
    end = limit - len(ELLIPSIS)
    while end > 0 and _continues(text, end):
        end -= 1
    return text[:end].rstrip() + ELLIPSIS


def header_text(text: str) -> str:
    """One line: every line separator (CR, LF, U+2028, NEL...) becomes a space."""
    return LINE_SEPARATORS.sub(" ", text)
