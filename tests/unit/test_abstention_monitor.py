"""The over-abstention monitor, with hand-worked sequences."""

from rlvlm.train.monitor import AbstentionMonitor


def test_flags_from_the_threshold_and_warns_once():
    m = AbstentionMonitor(threshold=0.5)
    assert m.check(1, {"rollout/false_ask_rate": 0.1}) is None
    first = m.check(2, {"rollout/false_ask_rate": 0.5})  # equal to the threshold counts
    assert first is not None and "update 2" in first and "50% of clear images" in first
    assert m.check(3, {"rollout/false_ask_rate": 0.9}) is None  # flagged, but said once
    assert m.check(4, {"rollout/false_ask_rate": 0.2}) is None
    assert m.summary() == {"over_abstention": {"threshold": 0.5, "updates_flagged": 2, "first_flagged": 2,
                                               "max_false_ask_rate": 0.9, "last_false_ask_rate": 0.2}}


def test_silent_without_the_help_wrappers_or_when_disabled():
    m = AbstentionMonitor(threshold=0.5)
    assert m.check(1, {"rollout/success_rate": 1.0}) is None and m.summary() == {}
    off = AbstentionMonitor(threshold=0.0)
    assert off.check(1, {"rollout/false_ask_rate": 1.0}) is None and off.summary() == {}


def test_state_round_trip():
    m = AbstentionMonitor(threshold=0.3)
    m.check(5, {"rollout/false_ask_rate": 0.4})
    n = AbstentionMonitor(threshold=0.3)
    n.load_state_dict(m.state_dict())
    assert n.summary() == m.summary()
    assert n.check(6, {"rollout/false_ask_rate": 0.6}) is None  # warned before the resume: not again
