"""`memstream bench ...` scenarios."""
