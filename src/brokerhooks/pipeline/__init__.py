"""Processing: the worker loop, enrichment, change detection, rule runs."""
