"""Fixtures shared by the publishing tests: verified builds and signing key pairs."""
import shutil

import pytest

from pipeline.specs import MODEL_NAMES


@pytest.fixture(scope="session")
def verified(exported, tmp_path_factory):
    """A copy of the exported root where both models also have a passing verification.json."""
    from pipeline.verify import VerifyConfig
    from pipeline.verify import main as verify_main

    out = tmp_path_factory.mktemp("verified")
    for name in MODEL_NAMES:
        shutil.copytree(exported["out"] / name, out / name, ignore=shutil.ignore_patterns(".lock"))
        verify_main(VerifyConfig(name, out, device="cpu"), log=lambda s: None)
    return out


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    """Two key pairs made by keygen: {"a": {...}, "b": {...}}, each {"private", "public",
    "fingerprint"}; "a" is the publisher's, "b" someone else's."""
    from pipeline.publishing.signing import keygen

    root = tmp_path_factory.mktemp("keys")
    return {name: keygen(root / name) for name in ("a", "b")}
