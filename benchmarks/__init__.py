"""labwire benchmarks: every figure is a ratio against raw pyzmq measured in the same run."""
