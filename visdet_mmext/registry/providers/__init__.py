"""One provider per outside package; each is an entry point of group ``visdet_mmext.optimizers``."""
