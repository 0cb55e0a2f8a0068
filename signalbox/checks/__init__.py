"""The reusable IQR rule, its SQL for ClickHouse and PostgreSQL, and the check factory."""
