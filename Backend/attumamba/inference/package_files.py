"""The files of a model package, read in place from its folder or zip (nothing is unpacked here).

Both kinds answer the same questions (a JSON file by name, the checkpoint names, whether the
data is intact), so checking a package and listing it is one piece of code for either.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from ..errors import InputError

CHECKPOINT = "checkpoint_final.pth"
MAX_UNZIPPED_BYTES = 2 * 1024 ** 3
#: zip damage that shows only when the data is read
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError)


def read_json(path: Path, what: str) -> dict:
    try:
        return _json_object(path.read_text(), path, what)
    except FileNotFoundError:
        raise InputError(f"{path} is missing: {what}") from None
    except UnicodeDecodeError as error:
        raise InputError(f"{path} is not valid JSON ({error}): {what}") from None
    except OSError as error:
        raise InputError(f"{path} cannot be read ({error.strerror or error}): {what}") from None


def _json_object(text: str, where: Path, what: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{where} is not valid JSON ({error}): {what}") from None
    if not isinstance(value, dict):
        raise InputError(f"{where} holds a JSON {type(value).__name__}, not an object: {what}")
    return value


class FolderFiles:
    """A package folder's files by name."""

    def __init__(self, root: Path, manifest: dict | None = None):
        self.root, self.manifest = root, manifest   # a manifest built for a folder that has none

    def where(self, name: str) -> Path:
        return self.root / name if name else self.root

    def json(self, name: str, what: str) -> dict:
        if name == "model.json" and self.manifest is not None:
            return self.manifest
        return read_json(self.root / name, what)

    def checkpoints(self) -> list[str]:
        return [str(p.relative_to(self.root).as_posix()) for p in sorted(self.root.glob(f"fold_*/{CHECKPOINT}"))]

    def verify(self) -> None:
        """Nothing to check beyond the manifest: a folder's checkpoints are read when the model loads."""


class ZipFiles:
    """A package zip's files by name, read without unpacking (the package may sit in a sub-folder)."""

    _verified: dict[tuple, str] = {}  # (path, size, mtime) → "" or what is wrong, so listing checks each version once

    def __init__(self, archive: zipfile.ZipFile, path: Path):
        self.archive, self.path = archive, path
        manifests = [n for n in archive.namelist() if PurePosixPath(n).name == "model.json"]
        self.prefix = str(PurePosixPath(manifests[0]).parent) + "/" if len(manifests) == 1 else ""
        self.prefix = "" if self.prefix == "./" else self.prefix

    def where(self, name: str) -> str:
        return f"{self.path}:{self.prefix}{name}"

    def json(self, name: str, what: str) -> dict:
        try:
            text = self.archive.read(self.prefix + name).decode()
        except KeyError:
            raise InputError(f"{self.where(name)} is missing: {what}") from None
        except UnicodeDecodeError as error:
            raise InputError(f"{self.where(name)} is not valid JSON ({error}): {what}") from None
        except ZIP_ERRORS as error:
            raise InputError(f"{self.where(name)} cannot be read ({error}); the zip is damaged: "
                             "copy it again") from None
        return _json_object(text, self.where(name), what)

    def checkpoints(self) -> list[str]:
        inside = [n[len(self.prefix):] for n in self.archive.namelist() if n.startswith(self.prefix)]
        return sorted(n for n in inside if PurePosixPath(n).match(f"fold_*/{CHECKPOINT}") and n.count("/") == 1)

    def verify(self) -> None:
        """Every member's CRC (the whole zip is read once per version of the file)."""
        stat = self.path.stat()
        key = (str(self.path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in self._verified:
            try:
                bad = self.archive.testzip()
                self._verified[key] = f"{bad} in it is damaged (bad CRC)" if bad else ""
            except ZIP_ERRORS as error:
                self._verified[key] = f"it cannot be read ({error})"
        if self._verified[key]:
            raise InputError(f"{self.path}: {self._verified[key]}; the zip is damaged: copy it again")


@contextmanager
def package_files(path: Path) -> Iterator[FolderFiles | ZipFiles]:
    if not path.is_file():
        yield FolderFiles(path)
        return
    with open_zip(path) as archive:
        yield ZipFiles(archive, path)


@contextmanager
def open_zip(path: Path) -> Iterator[zipfile.ZipFile]:
    """An open package zip whose entries are checked: size when unpacked, every path inside the package."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise InputError(f"{path} is a file but not a zip ({error}); give a package folder or zip") from None
    with archive:
        names = archive.infolist()
        if sum(i.file_size for i in names) > MAX_UNZIPPED_BYTES:
            raise InputError(f"{path} unpacks to more than {MAX_UNZIPPED_BYTES >> 30} GiB; refused")
        if any(Path(i.filename).is_absolute() or ".." in PurePosixPath(i.filename).parts or "\\" in i.filename
               for i in names):
            raise InputError(f"{path} has entries outside the package folder; refused")
        yield archive
