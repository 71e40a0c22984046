"""Report rendering: plots and the findings file. No pytest here."""
