"""Stand-ins for the outside world: payment gateway, parcel carriers, SMTP server."""
