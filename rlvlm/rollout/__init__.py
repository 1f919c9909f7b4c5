"""rlvlm.rollout"""
