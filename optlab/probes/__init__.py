"""Probes: functions of (model, optimizers, ...) that return flat {metric name: float} dictionaries,
computed only on logging steps. Metric names form one vocabulary shared by metrics.csv, summary.json
and the report (see README, "Metrics")."""
