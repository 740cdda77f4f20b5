"""The one exception root, split by what the caller does next.

- :class:`DeadLetterError`: the input is bad; route it to the dead-letter topic and move on.
- :class:`RetryableError`: a dependency hiccuped; try again (bounded) before giving up.
- :class:`FatalError`: continuing would lose or corrupt data; stop now, let a restart recover.
"""

from __future__ import annotations


class StreamInferError(Exception):
    """Root of every error stream-infer raises on purpose."""


class DeadLetterError(StreamInferError):
    """The event cannot be processed as sent; it belongs in the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RetryableError(StreamInferError):
    """A transient failure: the same call may succeed if repeated."""


class StoreUnavailableError(RetryableError):
    """The feature or label store did not answer (connection refused, timeout, busy).

    Store adapters raise this, and only this, for every I/O failure; callers pause, retry with
    bounded backoff and resume by themselves when the store answers again.
    """


class FatalError(StreamInferError):
    """An error that must stop the process (data would be lost or corrupted otherwise)."""


class ConfigError(FatalError):
    """Settings or topic layout are invalid; refuse to start."""


class DefinitionError(ConfigError):
    """The user's Feast repository defines something stream-infer cannot run exactly; the
    message names the view (or source, or service) and the field. Nothing is started."""


class KafkaAccessError(FatalError):
    """The cluster refused this client (authentication, authorization, TLS) or did not answer
    within ``kafka.startup_timeout_s``: retrying would not help; the message names the cause."""


class ModelArtifactError(FatalError):
    """A model artifact is missing, corrupt, or does not match its manifest."""


class ModelNotFoundError(StreamInferError):
    """No model (or version) by that name is registered."""


class ModelRoleError(StreamInferError):
    """A registry role change was refused (percent out of range, nothing to roll back to,
    clearing the champion, ...); nothing was changed."""


class DeliveryError(FatalError):
    """Kafka refused or lost a produced record after the client's own retries."""


class ModelError(FatalError):
    """The model failed on a batch even after a retry: not the events' fault, so nothing is
    dead-lettered; the process stops without storing the batch's offsets."""


class StateWriteError(FatalError):
    """Feature state could not be made durable; the batch is not acknowledged."""


class QueueFullError(StreamInferError):
    """The sidecar's scoring queue is at its bound; the caller gets 503 and retries later."""


class BatchTimeoutError(StreamInferError):
    """A sidecar request was not scored within its timeout (503)."""
