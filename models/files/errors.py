"""Every way a downscaled file can be wrong, each with a stable `code` (the service's error code)."""


class FileFormatError(ValueError):
    code = "bad_file"


class UnsupportedFormatError(FileFormatError):
    """Not a PNG, JPEG, WebP or AVIF stream (HEIC included)."""

    code = "unsupported_format"


class TruncatedFileError(FileFormatError):
    """The stream ends before the image data does."""

    code = "truncated_file"


class CorruptFileError(FileFormatError):
    """Broken chunk lengths or CRCs, undecodable image data, unreadable EXIF."""

    code = "corrupt_file"


class ImageTooLargeError(FileFormatError):
    """Declared pixel counts above the reader's limit (checked before any pixel is decoded)."""

    code = "image_too_large"


class NotRescaledError(FileFormatError):
    """A plain image: no `rescale` header (never made by this product, or metadata stripped)."""

    code = "not_rescaled"


class HeaderError(FileFormatError):
    """The header is present but malformed or inconsistent with the image."""

    code = "bad_header"


class NewerFormatError(HeaderError):
    """The header's format version is newer than this reader."""

    code = "newer_format"


class WeightsMismatchError(HeaderError):
    """The header's variant or scale is not what the weights it names are."""

    code = "weights_mismatch"


class LatentError(FileFormatError):
    """The -M code: bad base64 or zlib, wrong shape or length, missing."""

    code = "bad_latent"


class ChecksumError(FileFormatError):
    """The stored CRC-32 of the code or of the lossless LR pixels does not match."""

    code = "checksum_mismatch"


class MetadataTooLargeError(FileFormatError):
    """Writing: the metadata does not fit the container (JPEG's 64 KB APP1 segment; WebP and AVIF hold any header)."""

    code = "metadata_too_large"
