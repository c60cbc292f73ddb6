"""Chakor's roof: the `chakor` command, the quickstart, the supervisor and the benchmarks runner."""
