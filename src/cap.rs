//! CAP 1.2 (OASIS Common Alerting Protocol): being written.
