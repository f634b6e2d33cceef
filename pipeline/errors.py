"""Domain errors. The CLI turns each into a one-line message and a non-zero exit."""


def first_line(exc: BaseException) -> str:
    """The first line of a library's error message (or its type, if it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PipelineError(Exception):
    """A problem the user can act on: bad input, a missing or damaged artifact."""


class CheckpointError(PipelineError):
    """weights.safetensors or config.json is missing, unreadable or does not fit the spec."""


class InputError(PipelineError):
    """A user's input file breaks the model's input policy (shape, dtype, finite values)."""


class ExportError(PipelineError):
    """An exported artifact failed its own self-check."""


class IntegrityError(PipelineError):
    """A file does not match its manifest entry, or the manifest points outside its folder."""


class VerificationError(PipelineError):
    """A runtime's outputs do not match eager PyTorch within tolerance; carries the report."""

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report


class PublishError(PipelineError):
    """A release cannot be published: unverified artifacts, or a version that would change."""


class SigningKeyError(PipelineError):
    """A key file is not a usable key, or `keygen` would overwrite one."""


class SignatureError(IntegrityError):
    """A published version's signature is missing, unreadable, from another key, or does not
    cover exactly the files in its folder (one altered, added, removed or moved)."""


class ServeError(PipelineError):
    """tritonserver cannot serve the repository: bad repository, busy port, failed start."""
