"""Untrusted text on its way into a spreadsheet or CSV: never a formula, never a crash.

OWASP CSV injection: a cell that starts with = + - @ TAB CR or LF can run as a formula.
"""

from __future__ import annotations

import re

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")
# openpyxl refuses these control characters (IllegalCharacterError); they are shown as U+FFFD.
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
EXCEL_CELL_LIMIT = 32767


def is_formula_like(text: str) -> bool:
    return text.startswith(FORMULA_TRIGGERS)


def clean_text(text: str) -> str:
    """Control characters replaced; over-long text cut with a visible marker instead of silently."""
    text = _ILLEGAL.sub("\ufffd", text)
    if len(text) > EXCEL_CELL_LIMIT:
        marker = "…[truncated]"
        text = text[: EXCEL_CELL_LIMIT - len(marker)] + marker
    return text


def csv_text(text: str) -> str:
    """A CSV cell: a leading quote makes a formula-like value inert (the writer quotes every cell)."""
    text = clean_text(text)
    return "'" + text if is_formula_like(text) else text
