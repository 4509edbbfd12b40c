-- Runs once, when the container creates its database. Two example jobs: one succeeds every
-- minute, one fails every minute, so the watchdog has something to report.
CREATE EXTENSION pg_cron;
SELECT cron.schedule('example-healthy', '* * * * *', 'SELECT 1');
SELECT cron.schedule('example-failing', '* * * * *', 'SELECT 1/0');
