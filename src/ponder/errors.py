"""Errors a user can cause. Each message is one line that says what to do next."""


class PonderError(Exception):
    """Base class: the CLI prints the message and exits non-zero, without a traceback."""


class UnknownModel(PonderError):
    """A model name that is neither in the registry nor a path."""


class ModelNotPulled(PonderError):
    """A known model whose files are not in PONDER_HOME yet."""


class BadCheckpoint(PonderError):
    """A weights file that is truncated, corrupt, of the wrong format or with wrong tensors."""


class UnsupportedModel(PonderError):
    """A well-formed checkpoint of an architecture or tokenizer ponder does not implement."""


class PullFailed(PonderError):
    """Fetching a model failed; nothing was written."""


class ChecksumMismatch(PullFailed):
    """A pulled file does not match its pinned sha256; it has been removed."""


class ContextOverflow(PonderError):
    """A prompt (plus the tokens asked for) does not fit the model's context window."""


class BadParameter(PonderError, ValueError):
    """A setting outside its range (temperature, top-p, max tokens, ...); also a ValueError."""


class BadImage(PonderError):
    """An image that cannot be read, is empty, is too large to decode, or goes to a model without eyes."""
