"""A complete production environment that points nowhere (`.invalid` hosts): loading the
code location with it must succeed without connecting to anything."""

FAKE_PRODUCTION = {
    "SIGNALBOX_ENV": "production",
    "SIGNALBOX_WAREHOUSE_URL": "postgresql://signalbox:secret@warehouse.invalid:5432/signalbox",
    "SIGNALBOX_CLICKHOUSE_URL": "https://signalbox:secret@clickhouse.invalid:8443/activity",
    "SIGNALBOX_S3_BUCKET": "signalbox-prod",
    "SIGNALBOX_KAFKA_BOOTSTRAP": "kafka.invalid:9092",
    "SIGNALBOX_SMTP_HOST": "smtp.invalid",
    "SIGNALBOX_MAIL_TO": "oncall@example.invalid",
    "TELEGRAM_BOT_TOKEN": "123:fake",
    "TELEGRAM_CHAT_ID": "-100",
    "HELPSCOUT_CLIENT_ID": "id",
    "HELPSCOUT_CLIENT_SECRET": "secret",
    "NEOPLE_API_KEY": "key",
    "NEOPLE_CHARACTERS": "cain:abc",
}
