"""Stand-ins for the outside world: payment gateway, courier, SMTP server."""
