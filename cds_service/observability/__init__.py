"""What the service tells its operators: structured logs and Prometheus metrics."""
