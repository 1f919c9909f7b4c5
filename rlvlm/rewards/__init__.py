"""rlvlm.rewards"""
