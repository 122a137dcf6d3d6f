"""Text from users and the disk made safe to print: control and bidi characters escaped.

File names (and JSON keys, model names) come from users and from the disk: a name holding an
ANSI escape would restyle or rewrite the terminal, and one holding a newline would forge a line
of a summary or a table. Control characters (C0, DEL, C1) and the Unicode bidirectional
overrides are shown as Python escapes (``\\x1b``, ``\\n``, ``\\u202e``); everything else,
non-ASCII letters included, is kept as it is. Escaping is idempotent.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls; bidi embeddings/overrides/isolates and the direction marks.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` as one safe line: control and bidi characters escaped."""
    return _UNSAFE.sub(_escape, str(text))


def printable_lines(text: object) -> str:
    """Several lines (a table): each line escaped, the line breaks kept."""
    return "\n".join(printable(line) for line in str(text).split("\n"))
