//! Servers and proxies that misbehave on purpose, for tests.
