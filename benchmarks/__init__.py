"""strata's benchmarks: wrk scenarios against strata and two peers, run by ``make bench`` (see docs/benchmarks.md)."""
