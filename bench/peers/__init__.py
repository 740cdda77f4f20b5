"""Peer servers for ``bench.sidecar``: MLServer and BentoML serving the same ONNX model, each
from its own virtual environment (:mod:`bench.peers.venvs`), started and stopped by
:mod:`bench.peers.servers`. The files they load (:mod:`bench.peers.mlserver_runtime`,
:mod:`bench.peers.bento_service`) run inside those environments and import nothing of this
project."""
