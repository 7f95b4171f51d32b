"""From finished runs to the study's tables, figures and front page: runs.csv, Tables 1-3, the paper beside ours, analysis, plots, provenance."""
