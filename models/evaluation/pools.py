"""Evaluation image sets: a folder of photos, or `pypi`, the colour photos shipped inside PyPI packages.

The `pypi` pool needs scikit-image, scikit-learn and matplotlib installed (`pip install -e '.[eval]'`);
nothing is downloaded at run time.
"""

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from models.files.images import list_images

PYPI = "pypi"
PYPI_PHOTOS = (
    ("skimage", "data/astronaut.png"),
    ("skimage", "data/chelsea.png"),
    ("skimage", "data/coffee.png"),
    ("skimage", "data/motorcycle_left.png"),
    ("skimage", "data/rocket.jpg"),
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)
_DISTRIBUTIONS = {"skimage": "scikit-image", "sklearn": "scikit-learn", "matplotlib": "matplotlib"}


@dataclass(frozen=True)
class ImageSet:
    name: str
    paths: tuple[Path, ...]


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the {PYPI} pool needs the {_DISTRIBUTIONS[package]} package: pip install -e '.[eval]'"
        )
    return Path(spec.submodule_search_locations[0])


def pypi_pool() -> ImageSet:
    paths = []
    for package, relative in PYPI_PHOTOS:
        path = _package_dir(package) / relative
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing from the installed {_DISTRIBUTIONS[package]}")
        paths.append(path)
    return ImageSet(PYPI, tuple(paths))


def centre_crops(image_set: ImageSet, crop: int) -> ImageSet:
    """The same photos measured on their centre crop x crop pixels, named so: rows of whole photos and of
    crops never mix in a table or in `--reuse`."""
    return ImageSet(f"{image_set.name} (centre {crop}x{crop})", image_set.paths)


def image_set(source: str) -> ImageSet:
    """`pypi`, or a folder of images (named after the folder)."""
    if source == PYPI:
        return pypi_pool()
    return ImageSet(Path(source).name, tuple(list_images(source)))
