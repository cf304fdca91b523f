"""The files inside a compiled Qt resource bundle (`.rcc`), as some Debian packages ship their images.

Layout (Qt's rcc, format versions 1 to 3, all big-endian): a header `qres`, version, and the offsets of
the tree, data and names sections; the tree is a table of nodes, each a directory (its children are
consecutive nodes) or a file (an offset into the data section, where a 4-byte length precedes the bytes).
"""

import struct
import zlib
from collections.abc import Iterator

MAGIC = b"qres"
_DIRECTORY = 0x02
_ZLIB = 0x01  # payload: 4-byte uncompressed length, then a zlib stream
_ZSTD = 0x04


def _u16(blob: bytes, at: int) -> int:
    return struct.unpack_from(">H", blob, at)[0]


def _u32(blob: bytes, at: int) -> int:
    return struct.unpack_from(">I", blob, at)[0]


def resource_files(blob: bytes) -> Iterator[tuple[str, bytes]]:
    """(path inside the bundle, contents) of every file in an rcc bundle, in the bundle's order."""
    if len(blob) < 20 or blob[:4] != MAGIC:
        raise ValueError(f"not a Qt resource bundle: it starts with {blob[:4]!r}, not {MAGIC!r}")
    version, tree, data, names = (_u32(blob, at) for at in (4, 8, 12, 16))
    if not 1 <= version <= 3:
        raise ValueError(f"Qt resource bundle format {version} is not supported (1 to 3 are)")
    node_size = 14 if version == 1 else 22  # version 2 added an 8-byte modification time to each node

    def name(offset: int) -> str:
        length = _u16(blob, names + offset)
        return blob[names + offset + 6 : names + offset + 6 + 2 * length].decode("utf-16-be")

    def walk(index: int, prefix: str) -> Iterator[tuple[str, bytes]]:
        node = tree + index * node_size
        flags = _u16(blob, node + 4)
        path = prefix + name(_u32(blob, node)) if index else ""
        if flags & _DIRECTORY:
            count, first = _u32(blob, node + 6), _u32(blob, node + 10)
            for child in range(first, first + count):
                yield from walk(child, f"{path}/" if index else "")
            return
        start = data + _u32(blob, node + 10)
        payload = blob[start + 4 : start + 4 + _u32(blob, start)]
        if flags & _ZSTD:
            raise ValueError(f"{path} in the Qt resource bundle is zstd-compressed, which is not supported")
        yield path, zlib.decompress(payload[4:]) if flags & _ZLIB else payload

    yield from walk(0, "")
