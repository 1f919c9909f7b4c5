"""rlvlm.tasks"""
