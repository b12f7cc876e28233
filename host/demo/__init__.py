"""`lampwatch demo`: a rice-milling line of virtual nodes against a real collector."""
