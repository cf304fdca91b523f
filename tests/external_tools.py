"""Programs from Debian's packages that tests check against; .ci/run installs them."""

import os
import shutil

import pytest


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} must be installed in CI (.ci/run installs it)")
        pytest.skip(f"{name} not installed")
    return path


def optional_package(reason: str | None) -> None:
    """An optional extra the tests check against (`reason`: why it cannot run here, None where it can)."""
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (.ci/run installs it in CI)")
    pytest.skip(reason)
