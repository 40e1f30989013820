"""User-facing errors: the CLI prints these as one line and exits non-zero."""


class GleanError(Exception):
    """A problem with the user's input (file, checkpoint, argument), not a bug.

    The message must stand on its own in one line and name the offending thing.
    """


class CheckpointError(GleanError):
    """A checkpoint cannot be read, or its keys/shapes do not fit the model."""


class ImageError(GleanError):
    """An image cannot be read, decoded or written."""
