"""Studies: many runs, and honest comparisons between them."""
