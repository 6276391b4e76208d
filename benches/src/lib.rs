//! Benchmarks live in `src/bin`; this library is empty.
