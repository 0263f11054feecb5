"""What the daemon tells its operators: Prometheus metrics, structured logs, and systemd notifications."""
