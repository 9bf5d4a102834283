"""Trigger kinds, one package each (http, schedule; Kafka, WebSocket, email next). See docs/triggers.md."""
