"""A small NRRD reader/writer for the headers SimpleITK does not expose.

SimpleITK reads ordinary 3-D NRRD files well, but not Slicer's 4-D ``.seq.nrrd`` (a
``list`` axis plus ``axis N index values`` key/value pairs) and it does not let us lay out
a ``.seg.nrrd`` header exactly as Slicer writes it. This module parses the header itself
(fields ``key: value`` and key/value pairs ``key:=value``) and reads/writes the data with
numpy (``raw`` and ``gzip`` encodings, attached or detached data).

Usage::

    from BreastDCESegLib.io.nrrd import read_nrrd, write_nrrd

    header, data = read_nrrd("study.seq.nrrd")    # data: numpy array, axes in reverse NRRD order
    header.fields["kinds"]                         # ['domain', 'domain', 'domain', 'list']
    header.keyvalues["axis 3 index values"]        # '0 75.5 160'
"""

from __future__ import annotations

import gzip
import zlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import BadInputError

_TYPES = {
    np.dtype(np.int8): ("signed char", "int8", "int8_t"),
    np.dtype(np.uint8): ("uchar", "unsigned char", "uint8", "uint8_t"),
    np.dtype(np.int16): ("short", "short int", "signed short", "signed short int", "int16", "int16_t"),
    np.dtype(np.uint16): ("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"),
    np.dtype(np.int32): ("int", "signed int", "int32", "int32_t"),
    np.dtype(np.uint32): ("uint", "unsigned int", "uint32", "uint32_t"),
    np.dtype(np.int64): ("longlong", "long long", "long long int", "signed long long", "signed long long int",
                         "int64", "int64_t"),
    np.dtype(np.uint64): ("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"),
    np.dtype(np.float32): ("float",),
    np.dtype(np.float64): ("double",),
}
_NAME_TO_DTYPE = {name: dt for dt, names in _TYPES.items() for name in names}
_RAS_SPACES = {"right-anterior-superior", "ras"}
_LPS_SPACES = {"left-posterior-superior", "lps"}


@dataclass
class NrrdHeader:
    """Parsed NRRD header: ``fields`` (standard fields, lower-case names) and ``keyvalues``."""

    fields: dict[str, Any] = field(default_factory=dict)
    keyvalues: dict[str, str] = field(default_factory=dict)
    data_offset: int = 0

    @property
    def sizes(self) -> list[int]:
        return [int(s) for s in self.fields["sizes"].split()]

    def list_field(self, name: str) -> list[str]:
        """A per-axis field (``kinds``, ``labels``, ``units``) as a list (quoted items unquoted)."""
        value = self.fields.get(name)
        if value is None:
            return [""] * len(self.sizes)
        if '"' in value:
            return re.findall(r'"([^"]*)"', value)
        return value.split()

    def space_directions(self) -> list[Optional[np.ndarray]]:
        """Per-axis direction vectors in LPS (``None`` for non-spatial axes)."""
        value = self.fields.get("space directions")
        if value is None:
            return [None] * len(self.sizes)
        out: list[Optional[np.ndarray]] = []
        for token in re.findall(r"\([^)]*\)|none", value):
            if token == "none":
                out.append(None)
                continue
            out.append(np.array([float(v) for v in token.strip("()").split(",")]) * self._lps_sign())
        return out

    def space_origin(self) -> np.ndarray:
        value = self.fields.get("space origin")
        if value is None:
            return np.zeros(3)
        return np.array([float(v) for v in value.strip().strip("()").split(",")]) * self._lps_sign()

    def _lps_sign(self) -> np.ndarray:
        space = self.fields.get("space", "left-posterior-superior").strip().lower()
        if space in _RAS_SPACES:
            return np.array([-1.0, -1.0, 1.0])
        if space in _LPS_SPACES or not space:
            return np.ones(3)
        raise BadInputError(f"NRRD space '{space}' is not supported (expected LPS or RAS).")


def read_nrrd_header(path: str | Path) -> NrrdHeader:
    """Parse the header of an NRRD file (``.nrrd`` or detached ``.nhdr``).

    Raises:
        BadInputError: not an NRRD file, or the header is truncated.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            magic = f.readline()
            if not magic.startswith(b"NRRD000"):
                raise BadInputError(f"{path} is not an NRRD file (no 'NRRD000x' magic line).")
            header = NrrdHeader()
            while True:
                line = f.readline()
                if not line:
                    if "data file" in header.fields or "datafile" in header.fields:
                        break
                    raise BadInputError(f"{path}: the NRRD header is truncated (no blank line before the data).")
                text = line.decode("latin-1").rstrip("\r\n")
                if text == "":
                    break
                if text.startswith("#"):
                    continue
                if ":=" in text:
                    key, value = text.split(":=", 1)
                    header.keyvalues[key] = value
                elif ": " in text:
                    key, value = text.split(": ", 1)
                    header.fields[key.strip().lower()] = value.strip()
            header.data_offset = f.tell()
    except OSError as exc:
        raise BadInputError(f"Cannot read {path}: {exc}.") from exc
    for required in ("type", "dimension", "sizes"):
        if required not in header.fields:
            raise BadInputError(f"{path}: the NRRD header has no '{required}' field.")
    return header


def _dtype(header: NrrdHeader, path: Path) -> np.dtype:
    name = header.fields["type"].strip().lower()
    if name not in _NAME_TO_DTYPE:
        raise BadInputError(f"{path}: NRRD type '{name}' is not supported.")
    dt = _NAME_TO_DTYPE[name]
    if dt.itemsize > 1:
        endian = header.fields.get("endian", "little").strip().lower()
        dt = dt.newbyteorder("<" if endian == "little" else ">")
    return dt


def read_nrrd(path: str | Path) -> tuple[NrrdHeader, np.ndarray]:
    """Header and data of an NRRD file; the array's axes are the NRRD axes reversed (C order).

    Raises:
        BadInputError: unreadable, truncated or unsupported (encoding, type) file.
    """
    path = Path(path)
    header = read_nrrd_header(path)
    dtype = _dtype(header, path)
    sizes = header.sizes
    encoding = header.fields.get("encoding", "raw").strip().lower()
    detached = header.fields.get("data file") or header.fields.get("datafile")
    try:
        if detached:
            data_path = Path(detached) if Path(detached).is_absolute() else path.parent / detached
            raw = data_path.read_bytes()
        else:
            with open(path, "rb") as f:
                f.seek(header.data_offset)
                raw = f.read()
        if encoding in ("gzip", "gz"):
            raw = gzip.decompress(raw)
        elif encoding != "raw":
            raise BadInputError(f"{path}: NRRD encoding '{encoding}' is not supported (use raw or gzip).")
    except (OSError, EOFError, zlib.error) as exc:
        raise BadInputError(f"{path}: the NRRD data cannot be read ({exc}); the file is damaged or truncated.") from exc
    count = int(np.prod(sizes))
    skip = int(header.fields.get("byte skip", "0"))
    if skip == -1:
        skip = len(raw) - count * dtype.itemsize
    if len(raw) - skip < count * dtype.itemsize:
        raise BadInputError(f"{path}: the NRRD data is truncated ({len(raw) - skip} bytes, "
                            f"{count * dtype.itemsize} expected for sizes {sizes}).")
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=skip).reshape(sizes[::-1])
    return header, data.astype(dtype.newbyteorder("="), copy=False)


def _vec(v: Sequence[float]) -> str:
    return "(" + ",".join(repr(float(x)) for x in v) + ")"


def write_nrrd(path: str | Path, data: np.ndarray, kinds: Sequence[str], directions: Sequence[Optional[Sequence[float]]],
               origin: Sequence[float], keyvalues: Optional[dict[str, str]] = None,
               labels: Optional[Sequence[str]] = None, units: Optional[Sequence[str]] = None,
               compress: bool = True) -> Path:
    """Write ``data`` (axes in reverse NRRD order) as an attached-data NRRD in LPS space.

    ``directions`` gives one LPS vector (spacing included) per NRRD axis, ``None`` for a
    non-spatial (``list``) axis. The file is written directly to ``path``: callers wrap
    this in :func:`~BreastDCESegLib.io.atomic.atomic_path`.
    """
    data = np.ascontiguousarray(data)
    dtype = data.dtype.newbyteorder("<") if data.dtype.itemsize > 1 else data.dtype
    lines = ["NRRD0004", "# Complete NRRD file format specification at:",
             "# http://teem.sourceforge.net/nrrd/format.html",
             f"type: {_TYPES[np.dtype(data.dtype.newbyteorder('='))][0]}",
             f"dimension: {data.ndim}", "space: left-posterior-superior",
             "sizes: " + " ".join(str(s) for s in data.shape[::-1]),
             "space directions: " + " ".join("none" if d is None else _vec(d) for d in directions),
             "kinds: " + " ".join(kinds)]
    if labels is not None:
        lines.append("labels: " + " ".join(f'"{x}"' for x in labels))
    if units is not None:
        lines.append("units: " + " ".join(f'"{x}"' for x in units))
    lines += ["endian: little", f"encoding: {'gzip' if compress else 'raw'}", "space origin: " + _vec(origin)]
    for key, value in (keyvalues or {}).items():
        lines.append(f"{key}:={value}")
    payload = data.astype(dtype, copy=False).tobytes()
    if compress:
        payload = gzip.compress(payload, compresslevel=1)
    with open(path, "wb") as f:
        f.write(("\n".join(lines) + "\n\n").encode("latin-1"))
        f.write(payload)
    return Path(path)
