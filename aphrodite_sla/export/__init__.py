"""Exposition: a Prometheus collector that reads state at scrape time, and a loopback HTTP server."""
