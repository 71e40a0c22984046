"""pytest glue for terrain: options, parametrisation, load-once fixtures, findings, report."""
