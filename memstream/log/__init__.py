"""The log as the source of truth: the on-disk archive, replay into new store versions, dead letters."""
