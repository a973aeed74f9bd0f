"""Offline evaluations of memstream's models on simulated or recorded streams."""
