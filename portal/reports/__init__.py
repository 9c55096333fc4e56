"""The supervisors' reports (SPEC M4): filters, the five reports, their charts, CSV and API."""
