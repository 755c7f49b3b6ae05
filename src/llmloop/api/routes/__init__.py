"""REST routes, one module per noun; each calls its service and nothing else."""
