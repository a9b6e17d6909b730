"""One provider per outside package (``registry.loader.OWN_PROVIDERS`` lists them in order)."""
