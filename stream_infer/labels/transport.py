"""faust's aiokafka transport with a cheaper hand-off from the fetcher to the streams.

faust-streaming hands every fetched message to its streams through
``Service.wait_first(callback(message), suspend_flow.wait())``: two asyncio tasks and an
``asyncio.wait`` per message, so that a rebalance (which sets ``suspend_flow``) can abandon a
hand-off blocked on a full stream buffer. That bookkeeping is most of faust's per-event cost:
a faust agent that does nothing with its events gets about 5k events/s on one core here, and
about 11k/s with the hand-off below (``python -m bench.labels`` measures the product's app
both ways).

The hand-off here awaits the callback directly while the flow runs, and keeps faust's
``wait_first`` only while the flow is suspended. What that gives up: a hand-off already
blocked on a full buffer when a rebalance starts completes instead of being abandoned, so the
agent may see a message of a partition just revoked. The label aggregator is safe against that
by construction: partials are applied by compare-and-set on each partition's applied offset
(:mod:`stream_infer.labels.stores`), so a message the new owner has counted is refused.

The loop mirrors faust-streaming 0.15's ``Consumer._drain_messages`` otherwise (offset gaps,
``broker_commit_every``, the stop conditions, the diagnostic flag), which is why the dependency
is pinned to that minor version.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka

#: Messages handed off between explicit yields to the event loop (faust's own figure).
_YIELD_EVERY = 100


class LeanHandoffConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer; see the module docstring for what differs."""

    async def _drain_messages(self, fetcher: Any) -> None:
        callback = self.callback
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        flow_suspended = self.suspend_flow.is_set
        read_offsets = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        commit_every = self._commit_every
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                batch = self.getmany(timeout=1.0)
                await asyncio.sleep(0)  # getmany may return at once, again and again
                if self.should_stop:
                    continue
                async for tp, message in batch:
                    since_yield += 1
                    if since_yield > _YIELD_EVERY:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    read = read_offsets[tp]
                    if read is not None and offset < read:
                        continue  # already handed off (a re-fetch after a seek)
                    if read and offset - read > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, read + 1, offset)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if flow_suspended():
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                    else:
                        await callback(message)
                    read_offsets[tp] = offset
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


class LeanHandoffTransport(faust_aiokafka.Transport):
    """faust's aiokafka transport with :class:`LeanHandoffConsumer`."""

    Consumer = LeanHandoffConsumer


def use_lean_handoff(app: Any) -> None:
    """Make ``app`` (a faust App not started yet) consume through :class:`LeanHandoffTransport`.

    Only this app changes: faust's transport registry is left alone.
    """
    app.transport = LeanHandoffTransport(app.conf.broker_consumer, app)
