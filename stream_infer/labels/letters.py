"""The label processor's dead letters: built bounded, delivered before their batch is acked.

Letters come from the one size-bounded builder the worker uses
(:func:`stream_infer.dead_letters.build_dead_letter`), so an oversized label never makes a
letter the producer refuses. :meth:`DeadLetterSender.deliver` returns only once Kafka has
acknowledged every letter of a batch; a letter whose delivery failed is produced again, with
backoff, until it is acknowledged or the processor stops, and the batch is acknowledged to
faust only after that (docs/ARCHITECTURE.md, "Events from the future"). A crash in between
re-delivers the batch, which makes its letters again: duplicates, never loss.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import tenacity

from stream_infer.dead_letters import build_dead_letter
from stream_infer.errors import DeliveryError, RetryableError
from stream_infer.labels.aggregator import LabelRecord
from stream_infer.records import Headers, OutRecord

log = logging.getLogger(__name__)


class LetterProducer(Protocol):
    """What the sender needs of a producer (a confluent-kafka Producer fits)."""

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        headers: Headers | None = None,
        on_delivery: Callable[[Any, Any], None] | None = None,
    ) -> None: ...

    def poll(self, timeout: float = ...) -> int: ...

    def flush(self, timeout: float = ...) -> int: ...


def letters_of(
    dead: Sequence[tuple[LabelRecord, str]], topic: str, max_bytes: int, prefix_bytes: int
) -> list[OutRecord]:
    """The dead letters of a batch's refused labels, each at most ``max_bytes``."""
    return [
        build_dead_letter(
            rec.value,
            rec.key,
            reason,
            source_topic=topic,
            source_partition=rec.partition,
            source_offset=rec.offset,
            max_bytes=max_bytes,
            prefix_bytes=prefix_bytes,
        )
        for rec, reason in dead
    ]


class _Undelivered(RetryableError):
    """Some letters of a batch were not acknowledged (the attempt is repeated)."""


class DeadLetterSender:
    """Delivers letters to ``topic`` and waits for Kafka's acknowledgements.

    Thread-safe to :meth:`stop` from another thread; one :meth:`deliver` at a time.
    """

    def __init__(
        self,
        producer: LetterProducer,
        topic: str,
        *,
        retry_initial_s: float,
        retry_max_s: float,
        flush_timeout_s: float = 30.0,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._initial_s = retry_initial_s
        self._max_s = retry_max_s
        self._flush_timeout_s = flush_timeout_s
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Make a running :meth:`deliver` give up (it raises; its batch stays unacked)."""
        self._stopping.set()

    def deliver(self, letters: Sequence[OutRecord]) -> None:
        """Return once every letter is acknowledged; a failed one is produced again.

        Raises:
            DeliveryError: :meth:`stop` was called before every letter was acknowledged (the
                batch must not be acked: its re-delivery makes the letters again).
        """
        pending = list(letters)
        if not pending:
            return

        def attempt() -> None:
            failed = self._send(pending)
            if failed:
                pending[:] = [pending[i] for i in failed]
                raise _Undelivered(f"{len(failed)} dead letter(s) not acknowledged")

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Undelivered),
            wait=tenacity.wait_exponential_jitter(initial=self._initial_s, max=self._max_s),
            stop=tenacity.stop_when_event_set(self._stopping),
            sleep=self._sleep,
            before_sleep=self._failed,
            reraise=True,
        )
        try:
            retrying(attempt)
        except _Undelivered as exc:
            raise DeliveryError(f"stopped with dead letters undelivered: {exc}") from exc

    def _send(self, letters: Sequence[OutRecord]) -> list[int]:
        """Produce ``letters`` and flush; the indices of those not acknowledged."""
        errors: list[Any] = [None] * len(letters)
        done = [False] * len(letters)

        def report(i: int) -> Callable[[Any, Any], None]:
            def on_delivery(err: Any, _msg: Any) -> None:
                errors[i] = err
                done[i] = True

            return on_delivery

        for i, letter in enumerate(letters):
            while True:
                try:
                    self._producer.produce(
                        self._topic,
                        letter.value,
                        letter.key,
                        headers=letter.headers,
                        on_delivery=report(i),
                    )
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    self._producer.poll(0.1)
                except Exception as exc:  # refused at produce(): counts as a failed delivery
                    errors[i], done[i] = exc, True
                    break
        self._producer.flush(self._flush_timeout_s)
        return [i for i in range(len(letters)) if not done[i] or errors[i] is not None]

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)  # a stop cuts the backoff short

    def _failed(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.warning("label dead letters not delivered (%s); producing them again", exc)
