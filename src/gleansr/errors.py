"""User-facing errors: the CLI prints these as one line and exits non-zero."""


class GleanError(Exception):
    """A problem with the user's input (file, checkpoint, argument), not a bug.

    The message must stand on its own in one line and name the offending thing.
    """


class CheckpointError(GleanError):
    """A checkpoint cannot be read, or its keys/shapes do not fit the model."""


class ImageError(GleanError):
    """An image cannot be read, decoded or written."""


class WeightsError(GleanError):
    """A weights file is missing, corrupt or cannot be downloaded: a problem of this machine, not of a request.

    ``public`` is the same fact for someone who does not run this machine (a web client): it names
    the file but no folder, and says who must fix it. A server answers it with 503.
    """

    def __init__(self, message: str, public: str):
        super().__init__(message)
        self.public = public
