"""The supervisors' side (SPEC M): metric definitions, the live monitor, its socket."""
