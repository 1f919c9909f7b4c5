"""rlvlm.train"""
