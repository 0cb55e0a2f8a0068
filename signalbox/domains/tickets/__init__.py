"""Customer tickets: a Kafka-API topic -> a processor in a consumer group that routes each
ticket to a team and aggregates them -> JSON in the object store and tables in the
warehouse -> dbt marts. The processor runs beside Dagster (`signalbox tickets process`)
and reports each batch to the Dagster instance as a materialization."""

GROUP = "tickets"
PRODUCTION_VARIABLES = {"SIGNALBOX_KAFKA_BOOTSTRAP": "the Kafka-API cluster of the tickets topic"}
