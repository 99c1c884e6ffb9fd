"""Side-by-side benchmarks against the tools users would pick instead (docs/benchmarks.md)."""
