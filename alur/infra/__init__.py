"""Local infrastructure as plain processes: Kafka, PostgreSQL, simulators, the services."""
