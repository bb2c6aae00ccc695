"""Counters a media worker reports and the signalling process exports (stats, /metrics)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SuppressedCounts:
    """NACKed packets not resent, by reason."""

    recent: int = 0  # resent less than one RTT ago
    too_old: int = 0  # older than the receiver can use
    limit: int = 0  # resent MAX_RETRANSMISSIONS times already
    not_sent: int = 0  # never sent by this consumer, or gone from its history
    budget: int = 0  # over the retransmission budget

    def as_dict(self) -> dict[str, int]:
        """camelCase names, as in stats (SUPPRESSION_REASONS)."""
        return {
            "recent": self.recent,
            "tooOld": self.too_old,
            "limit": self.limit,
            "notSent": self.not_sent,
            "budget": self.budget,
        }


# The reasons' names in stats and metrics, read off SuppressedCounts.as_dict.
SUPPRESSION_REASONS = tuple(SuppressedCounts().as_dict())
