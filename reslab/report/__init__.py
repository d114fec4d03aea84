"""Report room: plots and the self-contained HTML report, built from saved result files only."""
