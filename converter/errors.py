"""The one exception type of the converter: a message that names the file or tensor at fault."""


class ConversionError(Exception):
    """Bad input or a failed step; the message names the file, key or tensor concerned."""
