"""Stream processing: the Faust app, its stages, topic admin."""
