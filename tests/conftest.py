import os

import pytest

# An accidental hub call must fail fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A tiny from-scratch Qwen2-VL model directory, built once per test session (training runs)."""
    from rlvlm.models.tiny import build_tiny_model

    d = tmp_path_factory.mktemp("m") / "qwen"
    build_tiny_model(d, "qwen2_vl", "tiny", seed=0)
    return d


@pytest.fixture(scope="session")
def idefics3_dir(tmp_path_factory):
    """A tiny from-scratch Idefics3 model directory, built once per test session (reward models, RLHF)."""
    from rlvlm.models.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("tiny_idefics3")
    build_tiny_model(out, "idefics3", "tiny", seed=0)
    return str(out)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """One tiny from-scratch model directory per supported architecture, built once per session."""
    from rlvlm.models.tiny import ARCHS, build_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    return {arch: build_tiny_model(root / arch, arch, "tiny", seed=0) and root / arch for arch in ARCHS}
