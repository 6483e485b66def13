"""The probing room: the kinds (`registry`), one runner per target on its interval behind its
circuit breaker (`runtime`, `circuit_breaker`, `abandon`), on a loop of its own (`thread`),
the targets this replica owns (`sharding`), and `/probe`'s probes on demand (`on_demand`)."""
