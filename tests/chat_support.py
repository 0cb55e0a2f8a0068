"""The bot token of the session's Telegram simulator (the `chat` fixture in conftest.py)."""

CHAT_TOKEN = "7349201856:AAH3kL9xQ-zT4vW8yB2nC5mD7fG1hJ0pRsU"
