"""Money as text: exact, at least two decimals, never through float."""

from __future__ import annotations

from decimal import Decimal

CENT = Decimal("0.01")


def money_str(value: Decimal) -> str:
    """``Decimal('88.000000')`` → ``'88.00'``; sub-cent digits (WeChat fees) are kept: ``'0.00012'``."""
    cents = value.quantize(CENT)
    return str(cents) if cents == value else str(value.normalize())
