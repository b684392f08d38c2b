"""Settings for every Alur process, read once from ALUR_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES: tuple[str, ...] = ("orders", "inventory", "payments", "shipping", "notifications")
CARRIERS: tuple[str, ...] = ("kilat", "nusapost")  # simulated; each has a port and a secret
# The settings that are secrets: never printed (SecretStr), and outside a local run never left
# at their `alur-local-*` defaults.
SECRETS: tuple[str, ...] = ("pg_password", "kilat_secret", "nusapost_secret",
                            "inventory_admin_token", "gateway_callback_secret",
                            "identity_pepper")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ALUR_", frozen=True)

    environment: Literal["local", "production"] = Field(
        "local", description="production (deploy/k8s sets it): every secret must be set, "
        "none may keep its local default; the process refuses to start otherwise.")
    state_dir: Path = Field(Path(".alur/dev"), description="Data dirs, logs and PID files.")
    jar_dir: Path = Field(Path(".alur/jars"), description="Cache of the Kafka broker jars.")

    # Where the services find their dependencies. Local infrastructure always listens on
    # loopback; other hosts are for deployments (docker-compose.yml, deploy/).
    kafka_host: str = "127.0.0.1"
    pg_host: str = "127.0.0.1"
    smtp_host: str = "127.0.0.1"
    gateway_host: str = "127.0.0.1"
    payments_host: str = Field("127.0.0.1", description="Host the gateway calls back.")
    carrier_host: str = Field("127.0.0.1", description="Host of the carrier simulators; "
                              "'{carrier}' in it becomes the carrier's name.")
    shipping_host: str = Field("127.0.0.1", description="Host the carriers call back.")
    listen_host: str = Field("127.0.0.1", description="Address the API and /metrics bind to.")

    kafka_port: int = Field(19092, description="Client port of broker 1; broker n listens on "
                            "kafka_port + 10 * (n - 1).")
    kafka_controller_port: int = Field(19093, description="Controller port of node 1; node n "
                                       "on kafka_controller_port + 10 * (n - 1).")
    kafka_shop_port: int = Field(0, description="Shops' SASL listener (SCRAM-SHA-512) of "
                                 "broker 1; 0 means kafka_port + 2. Broker n listens on it "
                                 "+ 10 * (n - 1).")
    kafka_shop_host: str = Field("", description="Host shops are told to connect to (`alur "
                                 "shops add --kafka`); empty means kafka_host.")
    brokers: int = Field(1, ge=1, le=5, description="Kafka nodes of the local KRaft cluster "
                         "(`alur infra up --brokers 3`); from 3 on, topics are replicated 3 "
                         "times with min.insync.replicas=2.")
    kafka_heap: str = "512m"
    partitions: int = Field(4, ge=1, description="Partitions per topic created by Alur.")

    pg_port: int = 15432
    pg_user: str = "alur"
    pg_password: SecretStr = SecretStr("alur-local")
    pg_database: str = "alur"
    smtp_sessions: int = Field(1, ge=1, description="SMTP sessions notifications keeps open. "
                               "Each sends one e-mail at a time, and a crash of the service "
                               "may send the e-mail in flight on each session twice (the sent-"
                               "e-mail log records it only once the server accepted it).")
    pg_pool_size: int = Field(8, description="PostgreSQL connections per service process: the "
                              "consumer's batch holds one, the relay, the timers and each "
                              "partner callback or API request in flight take one at a time.")

    smtp_port: int = 2525
    api_port: int = Field(8080, description="Orders HTTP API.")
    gateway_port: int = Field(8090, description="Payment gateway simulator.")
    payments_port: int = Field(8082, description="Payments HTTP endpoint (gateway callbacks).")
    shipping_port: int = Field(8100, description="Shipping HTTP endpoint (carrier webhooks).")
    kilat_port: int = Field(8101, description="The `kilat` carrier simulator.")
    nusapost_port: int = Field(8102, description="The `nusapost` carrier simulator.")
    kilat_secret: SecretStr = Field(SecretStr("alur-local-kilat-secret"), description=(
        "Shared secret `kilat` signs its webhooks with (set a real one outside local runs)."))
    nusapost_secret: SecretStr = Field(SecretStr("alur-local-nusapost-secret"), description=(
        "Shared secret `nusapost` signs its webhooks with."))
    inventory_port: int = Field(8084, description="Inventory admin API (stock, thresholds).")
    inventory_admin_token: SecretStr = Field(
        SecretStr("alur-local-inventory-admin"), description="Bearer token of the inventory "
        "admin API (set a real one outside local runs).")
    gateway_callback_secret: SecretStr = Field(
        SecretStr("alur-local-gateway-secret"), description="Shared secret the gateway signs "
        "its callbacks with (set a real one outside local runs).")
    metrics_port_base: int = Field(9400, description="Service i serves /metrics, /healthz and "
                                   "/readyz on base + i.")
    prometheus_port: int = Field(9490, description="The local Prometheus (alur infra up).")
    scrape_interval: float = Field(5.0, description="Prometheus scrape and rule evaluation "
                                   "interval, seconds.")

    batch_size: int = 500
    batch_within: float = Field(0.05, description="Seconds to wait to fill a batch.")
    retry_attempts: int = Field(4, description="Tries of a failing message before its DLQ.")
    retry_backoff: float = Field(0.1, description="First retry delay; doubles per try.")
    partner_patience: float = Field(120.0, description="Seconds a message whose partner "
                                    "(gateway, carrier, SMTP) keeps failing holds its batch, "
                                    "retried, before it is dead-lettered: a partner's restart "
                                    "or short outage dead-letters nothing.")
    straggler_after: float = Field(2.0, description="Seconds a batch waits for its partner "
                                   "calls (gateway, carrier, SMTP) before it commits without "
                                   "the orders whose calls still run; those commit on their "
                                   "own once answered, so a slow answer delays its own order "
                                   "only.")
    relay_interval: float = Field(5.0, description="Seconds between polls of the outbox when no "
                                  "NOTIFY arrives (every commit that adds rows sends one).")
    relay_batch: int = 1000
    outbox_retention: float = Field(3600.0, description="Seconds published rows are kept.")
    session_timeout: float = Field(10.0, description="Kafka group session timeout, seconds.")
    wedged_after: float = Field(60.0, gt=0, description="Seconds a service's core (consumer, "
                                "relay, timers) may fail or stand still before /healthz fails and "
                                "the process exits for its supervisor; also how long a starting "
                                "service waits for PostgreSQL and Kafka.")
    log_level: str = "warning"
    sample_interval: float = Field(5.0, description="Seconds between samples of lag, outbox "
                                   "backlog and stuck orders.")
    stuck_after: float = Field(900.0, description="An order with no progress for this many "
                               "seconds counts as stuck.")
    api_body_limit: int = Field(262_144, description="Largest request body, bytes (else 413).")
    api_rate_per_second: float = Field(50.0, description="Requests per second per shop, unless "
                                       "the shop has its own limit (else 429).")
    api_burst: int = Field(100, description="Requests a shop may send at once above its rate.")
    signature_tolerance: float = Field(300.0, description="Seconds a request signature's "
                                       "timestamp may be off.")
    idempotency_ttl: float = Field(86_400.0, description="Seconds an Idempotency-Key is kept.")
    return_window_days: float = Field(30.0, description="Days after delivery a return may be "
                                      "requested.")
    loyalty_expiry_days: float = Field(365.0, gt=0, description="Days after it was earned "
                                       "a loyalty point expires.")
    identity_pepper: SecretStr = Field(SecretStr("alur-local-identity-pepper"), min_length=16,
                                       description=(
        "The secret that keys the hashes customer identifiers are compared by (HMAC-SHA256). "
        "Changing it makes every known identifier unknown."))
    reservation_ttl: float = Field(900.0, description="Seconds stock stays reserved for an "
                                   "order whose payment has not started.")
    bank_transfer_ttl: float = Field(86_400.0, description="Seconds a customer has to pay a "
                                     "bank transfer into its virtual account.")
    app_payment_ttl: float = Field(900.0, description="Seconds a customer has to pay a QRIS "
                                   "code or approve an e-wallet push before it lapses.")
    release_after: float = Field(300.0, description="Seconds a paid order (a cash-on-delivery "
                                 "one once its stock is reserved) waits before it is released "
                                 "to shipping; the customer can cancel it until then.")
    auto_complete_after: float = Field(14 * 86_400.0, description="Seconds after delivery an "
                                       "order completes unless the customer confirmed earlier.")
    carrier_pickup_after: float = Field(2.0, description="Seconds the simulated carriers take "
                                        "to collect a parcel or a return after booking.")
    carrier_step_after: float = Field(0.5, description="Seconds between the simulated "
                                      "carriers' later parcel updates.")
    timer_interval: float = Field(1.0, description="Seconds between rounds of firing due "
                                  "timers (expiries, auto-completion, stuck orders).")
    webhook_backoff: float = Field(1.0, description="Seconds before a failed shop webhook "
                                   "delivery is tried again; doubles per attempt.")
    webhook_max_attempts: int = Field(8, ge=1, description="Attempts before a webhook delivery "
                                      "is marked failed.")
    egress_allow_loopback: bool = Field(False, description="Development only: let shops' "
                                        "webhooks reach loopback addresses (the tests' and the "
                                        "demo's receivers). Private, link-local and other "
                                        "internal addresses stay refused.")
    webhook_interval: float = Field(0.5, description="Seconds between rounds of webhook "
                                    "deliveries.")
    stuck_check_interval: float = Field(60.0, description="Seconds between counts of stuck "
                                        "orders (a scan of the orders event store).")

    @property
    def kafka_bootstrap(self) -> str:
        return ",".join(f"{self.kafka_host}:{port}" for port in self.kafka_ports)

    @property
    def kafka_ports(self) -> list[int]:
        return [self.kafka_port + 10 * n for n in range(self.brokers)]

    @property
    def kafka_shop_ports(self) -> list[int]:
        first = self.kafka_shop_port or self.kafka_port + 2
        return [first + 10 * n for n in range(self.brokers)]

    @property
    def kafka_shop_bootstrap(self) -> str:
        """Where shops connect: the brokers' SASL listener."""
        host = self.kafka_shop_host or self.kafka_host
        return ",".join(f"{host}:{port}" for port in self.kafka_shop_ports)

    @property
    def replication_factor(self) -> int:
        return min(3, self.brokers)

    @property
    def min_insync_replicas(self) -> int:
        """Of the replicas, how many must have a write before it is acknowledged."""
        return 2 if self.brokers >= 3 else 1

    @model_validator(mode="after")
    def _no_local_secrets_outside_local(self) -> Settings:
        if self.environment == "local":
            return self
        kept = [f"ALUR_{name.upper()}" for name in SECRETS
                if getattr(self, name) == type(self).model_fields[name].default]
        if kept:
            raise ValueError(f"a {self.environment} run refuses the local default of "
                             f"{', '.join(kept)}: give each a secret of its own")
        return self

    @property
    def pg_dsn(self) -> str:
        return (f"postgresql://{self.pg_user}:{self.pg_password.get_secret_value()}@"
                f"{self.pg_host}:{self.pg_port}/{self.pg_database}")

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def payments_url(self) -> str:
        """Where the gateway reaches the payments service (its callback base URL)."""
        return f"http://{self.payments_host}:{self.payments_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.gateway_host}:{self.gateway_port}"

    @property
    def shipping_url(self) -> str:
        """Where the carriers reach the shipping service (its webhook base URL)."""
        return f"http://{self.shipping_host}:{self.shipping_port}"

    def carrier_port(self, carrier: str) -> int:
        return int(getattr(self, f"{carrier}_port"))

    def carrier_secret(self, carrier: str) -> str:
        secret: SecretStr = getattr(self, f"{carrier}_secret")
        return secret.get_secret_value()

    def carrier_url(self, carrier: str) -> str:
        return f"http://{self.carrier_host.format(carrier=carrier)}:{self.carrier_port(carrier)}"

    def metrics_port(self, service: str) -> int:
        return self.metrics_port_base + SERVICES.index(service)

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def mail_dir(self) -> Path:
        return self.state_dir / "mail"
