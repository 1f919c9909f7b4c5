"""rlvlm.models"""
