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


class _TinyDirs(dict):
    """arch -> a tiny from-scratch model directory, built on first use and kept for the session
    (a run of one family's tests builds only that family)."""

    def __init__(self, root):
        super().__init__()
        self.root = root

    def __missing__(self, arch):
        from rlvlm.models.tiny import build_tiny_model

        build_tiny_model(self.root / arch, arch, "tiny", seed=0)
        self[arch] = self.root / arch
        return self[arch]


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """One tiny from-scratch model directory per supported family (rlvlm.models.tiny.ARCHS)."""
    return _TinyDirs(tmp_path_factory.mktemp("tiny"))
