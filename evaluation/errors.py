"""The evaluation's one exception type."""


class EvalError(Exception):
    """Bad input or a failed tool run; the message names the file, quant or tool concerned."""
