"""Long-lived Ray actors: PostgreSQL pools (and, later, outbox relays, Kafka consumers, rate-limit state)."""
