"""rlvlm.eval"""
