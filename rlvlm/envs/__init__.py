"""rlvlm.envs"""
