"""Watch the rollouts for over-abstention while training (issue 15).

A help-seeking policy can find that asking on every image beats reading it: the
reward then looks fine (no wrong answers), while accuracy on clear images falls
to 0. The rollouts already measure the symptom, the fraction of *clear* images
the policy asked about (`rollout/false_ask_rate`). This monitor flags every
update where that fraction reaches a threshold, says so once on the terminal
when it first happens, and leaves a summary for the report, so an
over-abstaining run is never mistaken for a result.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AbstentionMonitor:
    """Flags updates whose rollouts ask on >= `threshold` of the clear images (0 disables)."""

    threshold: float = 0.5
    flagged: list[int] = field(default_factory=list)
    worst: float = 0.0
    last: float | None = None

    def check(self, update: int, metrics: dict) -> str | None:
        """Record one update's rollout metrics; returns a warning line the first time it is flagged."""
        rate = metrics.get("rollout/false_ask_rate")
        if self.threshold <= 0 or rate is None:
            return None
        self.last = float(rate)
        self.worst = max(self.worst, self.last)
        if self.last < self.threshold:
            return None
        self.flagged.append(update)
        if len(self.flagged) > 1:
            return None
        return (f"[warn] update {update}: the rollouts asked for help on {self.last:.0%} of clear images "
                f"(threshold {self.threshold:.0%}): the policy is over-abstaining; see rollout/false_ask_rate")

    def summary(self) -> dict:
        """For report.json: None until the rollouts measured a false-ask rate at all."""
        if self.last is None:
            return {}
        return {"over_abstention": {"threshold": self.threshold, "updates_flagged": len(self.flagged),
                                    "first_flagged": self.flagged[0] if self.flagged else None,
                                    "max_false_ask_rate": self.worst, "last_false_ask_rate": self.last}}

    def state_dict(self) -> dict:
        return {"flagged": list(self.flagged), "worst": self.worst, "last": self.last}

    def load_state_dict(self, state: dict) -> None:
        self.flagged = list(state.get("flagged", []))
        self.worst = float(state.get("worst", 0.0))
        self.last = state.get("last")
