"""The transactional outbox: events committed with their change (`repository.add_events`), published to Kafka
by the relay (`relay.OutboxRelay`) after commit."""
