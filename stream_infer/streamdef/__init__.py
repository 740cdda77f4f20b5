"""A user's stream definitions, compiled: the transport-free contract (``spec``), its reference
evaluator, the columnar kernel, decoders, and the adapters that read them from a Feast
repository (docs/ARCHITECTURE.md, "Bring your own stream")."""
