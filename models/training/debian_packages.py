"""Pinned Debian packages: one exact version fetched with `apt-get download` and unpacked with `dpkg-deb -x`."""

import subprocess
from pathlib import Path


class PackageError(OSError):
    """A pinned package could not be fetched or unpacked."""


def _run(command: list[str], cwd: Path | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise PackageError(f"{' '.join(command)} failed ({done.returncode}): {detail[0]}")
    return done.stdout


def package_fields(deb: Path) -> tuple[str, str]:
    """(Package, Version) from a .deb's control file."""
    package, version = _run(["dpkg-deb", "--field", str(deb), "Package", "Version"]).splitlines()[:2]
    return package.split(":", 1)[1].strip(), version.split(":", 1)[1].strip()


def _downloaded(folder: Path, package: str, version: str) -> Path | None:
    for deb in sorted(folder.glob(f"{package}_*.deb")):
        if package_fields(deb) == (package, version):
            return deb
    return None


def download(package: str, version: str, folder: Path) -> Path:
    """The .deb of package=version in `folder`: one already there, else fetched from the machine's apt sources."""
    folder.mkdir(parents=True, exist_ok=True)
    deb = _downloaded(folder, package, version)
    if deb is None:
        try:
            _run(["apt-get", "download", f"{package}={version}"], cwd=folder)
        except PackageError as exc:
            raise PackageError(
                f"{exc}; is this version still in the apt sources (apt-cache policy {package}; apt-get update)?"
            ) from exc
        deb = _downloaded(folder, package, version)
    if deb is None:
        raise PackageError(f"apt-get download {package}={version} left no {package}_*.deb of that version in {folder}")
    return deb


def unpack(deb: Path, folder: Path) -> Path:
    """The package's files under `folder` (usr/share/...)."""
    folder.mkdir(parents=True, exist_ok=True)
    _run(["dpkg-deb", "-x", str(deb), str(folder)])
    return folder
