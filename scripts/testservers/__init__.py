"""Real servers from Debian's packages, started on loopback for tests, the demo and benchmarks."""
