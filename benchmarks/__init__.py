"""`make bench`: pipeline costs against bare baselines (see docs/benchmarks.md)."""
