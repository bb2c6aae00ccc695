"""Typed errors. Each maps to a protoo error response (errorCode, errorReason)."""


class SfuError(Exception):
    """Base class of every error the SFU raises on purpose."""

    code = 500


class InvalidRequestError(SfuError, TypeError):
    """A request or argument of the wrong type or shape (mediasoup's TypeError)."""

    code = 400


class ForbiddenError(SfuError):
    """The caller names an object that is not its own, or its access token does
    not grant what it asks (publishing, data)."""

    code = 403


class NotFoundError(SfuError):
    """The named object does not exist (or no longer exists)."""

    code = 404


class UnsupportedError(SfuError):
    """Capabilities or parameters the server cannot honour (codec mismatch, ...)."""

    code = 406


class InvalidStateError(SfuError):
    """The call is not valid in the object's current state (closed, already joined, ...)."""

    code = 409


class TooLargeError(SfuError):
    """A request over a configured size limit."""

    code = 413


class ConfigError(SfuError):
    """A bad configuration file: the message names the key."""

    code = 500


class LimitError(SfuError):
    """Over a configured limit: rooms, peers per room, producers, request rate."""

    code = 429
