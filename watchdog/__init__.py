"""pg-cron-watchdog: alerting and remediation for PostgreSQL pg_cron jobs."""

__version__ = "0.1.0"
