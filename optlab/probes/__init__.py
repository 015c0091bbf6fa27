"""Probes: measurements of a run, one module per probe, behind one interface (probe.py: the hooks and
when the loop calls them). Metric names form one vocabulary shared by metrics.csv, summary.json and the
report (README, "Metrics"). catalog.py is the one list of probes a config can switch on (schema.py: the
`probes:` section, torch-free like this file).
"""
