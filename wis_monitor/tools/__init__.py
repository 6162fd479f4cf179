"""The operator and analyst tools around the pipeline: replay, rule tests and checks,
calibration, charts, status, the live view, markets and the config reference."""
