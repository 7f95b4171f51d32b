"""A folder of images, one subfolder per class: its layout, its files and their pixels.

The layout is the one Keras' ``image_dataset_from_directory`` and torchvision's
``ImageFolder`` read: ``FOLDER/CLASS/IMAGE.png``, with class names the subfolders'
names in sorted order (label 0 is the first). A folder that holds exactly ``train/``
and ``validation/`` has that layout in each and keeps its own split; any other folder
is one set, split stratified by :func:`assign_splits`. PNG and JPEG files are read,
each the format its name says (a GIF named ``.png`` is refused); names beginning with a
dot (``.DS_Store``) are skipped, and a symbolic link that leads nowhere (a loop, a
missing target) is refused.

Three steps read it, each as early as it can:

- planning (:func:`read_layout`, :func:`image_header`): the folders and file names,
  and the first image's header, for K, the class names and the image shape;
- the download rule (:func:`survey`): every file's sha256 and pixels, so that a
  changed file replans its preparation and nothing else;
- the prepare rule (:func:`read_image`): the pixels, checked against those digests.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import math
import os
from pathlib import Path

import numpy as np

from smoothbench.config import ConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# The formats PIL may detect in a file of each name (MPO: a camera's JPEG with a preview).
_FORMATS = {".png": ("PNG",), ".jpg": ("JPEG", "MPO"), ".jpeg": ("JPEG", "MPO")}
SPLIT_FOLDERS = ("train", "validation")
# PIL modes by the channels smoothbench keeps: grey images stay one channel, colour
# ones three; a palette or a JPEG's CMYK/YCbCr is converted to RGB.
_GREY_MODES = ("1", "L")
_COLOUR_MODES = ("RGB", "P", "CMYK", "YCbCr")


class ImageFolderError(ConfigError):
    """A folder of images that cannot be prepared; the message names the file or folder
    (a ConfigError: at planning it stops the workflow as a bad config does)."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """The folder's classes and, per part (``train`` and ``validation``, or ``all``
    for a folder to be split), its files as (path relative to the folder, label)."""

    root: Path
    class_names: tuple[str, ...]
    parts: dict

    @property
    def has_own_split(self) -> bool:
        return "all" not in self.parts

    def files(self) -> list[tuple[str, int]]:
        return [entry for part in self.parts.values() for entry in part]


def _visible(folder: Path) -> list[Path]:
    """The entries of ``folder`` that are read (not dot-files), sorted; a name with a
    brace is refused (Snakemake reads braces in a rule's input paths as wildcards)."""
    entries = sorted(path for path in folder.iterdir() if not path.name.startswith("."))
    for path in entries:
        refuse_braces(path)
        refuse_broken_link(path)
    return entries


def refuse_broken_link(path: Path) -> None:
    """Refuse a symbolic link that leads nowhere (a loop, a missing target): Snakemake
    would find no such input file."""
    if not path.is_symlink():
        return
    try:
        path.stat()
    except OSError as error:
        if error.errno == errno.ELOOP:
            why = "in a loop (it leads back to itself)"
        elif error.errno == errno.ENOENT:
            why = f"to {os.readlink(path)}, which does not exist"
        else:
            why = f"that cannot be followed ({error.strerror})"
        raise ImageFolderError(
            f"{path} is a symbolic link {why}; remove or mend it"
        ) from None


def refuse_braces(path: Path) -> None:
    if "{" in str(path) or "}" in str(path):
        raise ImageFolderError(
            f"{path}: a name with {{ or }} cannot be an input of the workflow (Snakemake "
            "reads braces as wildcards); rename it"
        )


def _class_files(
    folder: Path, root: Path, class_names: tuple[str, ...]
) -> list[tuple[str, int]]:
    """(relative path, label) of every image under ``folder``'s class subfolders."""
    files = []
    for label, name in enumerate(class_names):
        class_folder = folder / name
        images = []
        for path in _visible(class_folder):
            if path.is_dir():
                raise ImageFolderError(
                    f"{path} is a folder inside the class folder {class_folder}: a class folder "
                    "holds image files only"
                )
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise ImageFolderError(
                    f"{path} is not a PNG or JPEG image (smoothbench reads "
                    f"{', '.join(IMAGE_SUFFIXES)} files); move it out of the class folder"
                )
            images.append((path.relative_to(root).as_posix(), label))
        if not images:
            raise ImageFolderError(
                f"class folder {class_folder} is empty: every class needs images"
            )
        files += images
    return files


def _classes(folder: Path) -> tuple[str, ...]:
    entries = _visible(folder)
    loose = [path for path in entries if not path.is_dir()]
    if loose:
        raise ImageFolderError(
            f"{loose[0]} lies in {folder} outside any class folder: each image goes in the "
            "subfolder of its class"
        )
    names = tuple(path.name for path in entries)
    if len(names) < 2:
        which = f"one class folder ({names[0]})" if names else "no class folder"
        raise ImageFolderError(
            f"{folder} holds {which}: a classifier needs at least two classes, one "
            "subfolder each"
        )
    return names


def read_layout(
    root: Path | str, key: str, validation_fraction: float | None
) -> Layout:
    """The classes and files of ``root`` (config key ``key``, e.g. datasets.cells);
    raises :class:`ImageFolderError` naming the file or folder at fault, or
    :class:`ConfigError` naming the key."""
    root = Path(root)
    refuse_braces(root)
    refuse_broken_link(root)
    if not root.is_dir():
        raise ConfigError(f"config key '{key}.folder': {root} is not a folder")
    entries = _visible(root)
    top = {path.name for path in entries if path.is_dir()}
    if top & set(SPLIT_FOLDERS):
        if top != set(SPLIT_FOLDERS):
            raise ImageFolderError(
                f"{root} holds {', '.join(sorted(top))}: a folder with its own split holds "
                "exactly train/ and validation/ (each with one subfolder per class); "
                "otherwise it holds the class folders themselves"
            )
        loose = [path for path in entries if not path.is_dir()]
        if loose:  # read by neither split: refused, as beside class folders
            raise ImageFolderError(
                f"{loose[0]} lies in {root} beside its train/ and validation/ folders: "
                "each image goes in a class folder of one of them"
            )
        if validation_fraction is not None:
            raise ConfigError(
                f"config key '{key}.validation_fraction': {root} has its own train/ and "
                "validation/ folders; remove the key (or merge them into one set)"
            )
        classes = _classes(root / "train")
        other = _classes(root / "validation")
        if other != classes:
            missing = sorted(set(classes) ^ set(other))
            raise ImageFolderError(
                f"{root / 'train'} and {root / 'validation'} hold different class folders "
                f"(only in one of them: {', '.join(missing)}); give both the same classes"
            )
        parts = {
            part: _class_files(root / part, root, classes) for part in SPLIT_FOLDERS
        }
        return Layout(root, classes, parts)
    classes = _classes(root)
    files = _class_files(root, root, classes)
    if validation_fraction is None:
        raise ConfigError(
            f"config key '{key}.validation_fraction' is missing: {root} has no train/ and "
            "validation/ folders, so name the share of its images held out for "
            "validation (e.g. 0.2)"
        )
    _check_fraction(key, root, classes, files, validation_fraction)
    return Layout(root, classes, {"all": files})


def _check_fraction(key, root, classes, files, fraction) -> None:
    """Refuse a stratified split that leaves a class without a training or a validation
    image (scikit-learn holds out ceil(fraction x N) images, at least K of them, and
    keeps at least K; each class needs two images)."""
    labels = np.array([label for _, label in files])
    counts = np.bincount(labels, minlength=len(classes))
    smallest = int(np.argmin(counts))
    if counts[smallest] < 2:
        raise ImageFolderError(
            f"class folder {root / classes[smallest]} holds {counts[smallest]} image: a "
            "split into training and validation needs two per class at least"
        )
    held_out = math.ceil(fraction * len(files))
    if not len(classes) <= held_out <= len(files) - len(classes):
        raise ConfigError(
            f"config key '{key}.validation_fraction': {fraction} holds out {held_out} of the "
            f"{len(files)} images of {root}, but each of the {len(classes)} classes needs an "
            "image on both sides of the split"
        )


def assign_splits(layout: Layout, fraction: float | None, seed: int) -> dict:
    """role (train, validation) -> the (relative path, label) of its images: the
    folder's own split, or a stratified one (scikit-learn's train_test_split of the
    sorted files with ``random_state=seed``, holding out ``fraction``)."""
    if layout.has_own_split:
        return {role: list(layout.parts[role]) for role in SPLIT_FOLDERS}
    from sklearn.model_selection import train_test_split

    files = layout.parts["all"]
    train, validation = train_test_split(
        files,
        test_size=fraction,
        stratify=[label for _, label in files],
        random_state=seed,
    )
    return {
        "train": sorted(train, key=lambda entry: entry[0]),
        "validation": sorted(validation, key=lambda entry: entry[0]),
    }


def check_split_reaches_every_class(
    layout: Layout, key: str, fraction: float, seed: int
) -> None:
    """Refuse a stratified split (:func:`assign_splits`, run here as the prepare step
    will run it) that leaves a class with no training or no validation image: with
    classes of very unequal sizes scikit-learn can give a small one none."""
    assigned = assign_splits(layout, fraction, seed)
    classes = len(layout.class_names)
    for role in SPLIT_FOLDERS:
        counts = np.bincount([label for _, label in assigned[role]], minlength=classes)
        if counts.min() == 0:
            empty = int(np.argmin(counts))
            name = layout.class_names[empty]
            images = sum(1 for _, label in layout.parts["all"] if label == empty)
            raise ConfigError(
                f"config key '{key}.validation_fraction': the stratified split of {layout.root} "
                f"holding out {fraction} (split_seed {seed}) leaves the class folder "
                f"{layout.root / name} ({images} images) no {role} image; raise the fraction, "
                "add images to that class, or give the folder its own train/ and validation/"
            )


def channels_of(mode: str, path: Path | str) -> int:
    """1 (grey) or 3 (colour) for a PIL mode; refuses what would lose or invent data."""
    if mode in _GREY_MODES:
        return 1
    if mode in _COLOUR_MODES:
        return 3
    why = (
        "has an alpha channel (transparency); save it without one"
        if "A" in mode
        else "is neither 8-bit grey nor colour; save it as 8-bit grey or RGB"
    )
    raise ImageFolderError(f"{path}: image mode {mode} {why}")


def _open(data: bytes, path: Path | str):
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except UnidentifiedImageError:
        raise ImageFolderError(
            f"{path} is not an image that can be read (not PNG or JPEG data, though "
            "its name says so)"
        ) from None
    except Image.DecompressionBombError as error:
        raise ImageFolderError(f"{path} is too large to read ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageFolderError(
            f"{path} cannot be read as an image, it is damaged or cut short ({error})"
        ) from None
    refuse_other_format(image.format, path)
    return image


def refuse_other_format(detected: str | None, path: Path | str) -> None:
    """Refuse a file whose data is not the format its name says (a GIF or BMP named
    .png): only PNG and JPEG are read."""
    wanted = _FORMATS.get(Path(path).suffix.lower(), ("PNG or JPEG",))
    if detected not in wanted:
        raise ImageFolderError(
            f"{path} holds {detected or 'unknown'} data, not the {wanted[0]} its name "
            "says; smoothbench reads PNG and JPEG images only: convert it"
        )


def image_header(path: Path | str) -> tuple[int, int, int]:
    """(height, width, channels) of one image, from its header alone (planning)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            mode = image.mode
            detected = image.format
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        OSError,
        SyntaxError,
        ValueError,
    ) as error:
        raise ImageFolderError(f"{path} cannot be read as an image ({error})") from None
    refuse_other_format(detected, path)
    return height, width, channels_of(mode, path)


def to_array(image, channels: int) -> np.ndarray:
    """A decoded PIL image as uint8 (H, W, channels)."""
    array = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    return array[..., None] if channels == 1 else array


def read_image(
    root: Path, relative: str, expected_sha256: str | None = None
) -> tuple[np.ndarray, str]:
    """One image's pixels and the sha256 of its file; with ``expected_sha256``,
    refuses a file that changed since the download rule recorded it."""
    path = root / relative
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise ImageFolderError(
            f"{path} changed after the download rule recorded it (sha256 {expected_sha256[:12]}..., "
            f"now {digest[:12]}...); touch it and run the workflow again: the download "
            "rule reads the folder anew (a file copied with its older modification time, "
            "cp -p or rsync -a, is a change Snakemake does not see by itself)"
        )
    image = _open(data, path)
    return to_array(image, channels_of(image.mode, path)), digest


def survey(layout: Layout, key: str, image_size: int | None) -> dict:
    """Read every image of ``layout`` once: its sha256, and that it decodes, all of one
    kind of channels and, without ``image_size`` (config key ``key``.image_size), of one
    size. Returns the download record's part for the folder."""
    digests: dict[str, str] = {}
    first_of_channels: dict[int, str] = {}
    first_of_size: dict[tuple[int, int], str] = {}
    for relative, _ in layout.files():
        array, digest = read_image(layout.root, relative)
        digests[relative] = digest
        first_of_channels.setdefault(array.shape[2], relative)
        first_of_size.setdefault(array.shape[:2], relative)
        if len(first_of_channels) > 1:
            grey, colour = first_of_channels[1], first_of_channels[3]
            raise ImageFolderError(
                f"{layout.root} mixes grey and colour images ({layout.root / grey} is grey, "
                f"{layout.root / colour} is colour): save them all as one kind"
            )
        if image_size is None and len(first_of_size) > 1:
            (one, one_file), (two, two_file) = list(first_of_size.items())[:2]
            raise ConfigError(
                f"config key '{key}.image_size' is missing: the images of {layout.root} differ "
                f"in size ({layout.root / one_file} is {one[0]}x{one[1]}, {layout.root / two_file} "
                f"is {two[0]}x{two[1]}); set image_size to the square side they are brought to"
            )
    return {
        "folder": str(layout.root),
        "class_names": list(layout.class_names),
        "channels": next(iter(first_of_channels)),
        "files": digests,
    }


def files_digest(entries: list[tuple[str, int]], digests: dict[str, str]) -> str:
    """sha256 over one split's files, in order: each line path, label and file sha256."""
    lines = "".join(
        f"{relative}\t{label}\t{digests[relative]}\n" for relative, label in entries
    )
    return hashlib.sha256(lines.encode()).hexdigest()
