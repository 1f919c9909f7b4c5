"""rlvlm.algos"""
