"""Benchmarks of the watchdog's cost against a seeded pg_cron database."""
