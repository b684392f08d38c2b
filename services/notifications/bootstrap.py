"""Builds the notifications service: an e-mail per customer-facing event, sent once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from alur.runtime import keyring, metrics
from alur.runtime.aggregate import Commands, Decider, Wiring
from alur.runtime.db import every
from alur.runtime.ports import UnitOfWork
from alur.runtime.worker import Context, ServiceDefinition, ServiceParts
from schemas import Event, Model, NotificationFailedData, NotificationSentData
from services.notifications import domain
from services.notifications.mailer import Mailer, SmtpMailer
from services.notifications.sent_log import PostgresSentLog, SentLog
from services.notifications.templates import render

SOURCE = "alur/notifications"
_deliveries = metrics.Children(metrics.NOTIFICATION_DELIVERIES)
_failed_emails = metrics.NOTIFICATION_DELIVERIES.labels("email", "failed")


def count_sent(events: Sequence[Event]) -> None:
    """Each e-mail sent (failed attempts are counted where they fail, in perform)."""
    for e in events:
        if e.type == "NotificationSent":
            _deliveries(e.data.channel, "sent").inc()


DECIDER = Decider(domain.NotificationState(), domain.evolve, domain.decide, domain.RELEVANT,
                  domain.OUTCOMES, opens=domain.OPENS, precede=domain.PRECEDE,
                  refuse=domain.refuse, count=count_sent)
log = logging.getLogger("alur.notifications")
SENT_LOG_RETENTION = 7 * 86_400.0  # far longer than any batch waits for its commit
PRUNE_EVERY = 3600.0


def commands(mailer: Mailer, sent_log: SentLog,
             open_sealed: keyring.OpenSealed = keyring.no_keyring, sessions: int = 1) -> Commands:
    """The notifications service's {command: handler} table: an e-mail, sent once."""
    # An e-mail's check in the sent log, its sending and its record are one turn, and only as
    # many turns run at once as there are SMTP sessions. The batch plans up to 64 e-mails side
    # by side: had each been checked before it queued for a session, a PostgreSQL restart
    # would let every queued e-mail go out with no record of it, all sent again after the
    # restart (the fault suite saw 32). Checked at the start of its turn, an e-mail finds the
    # database gone and waits; at most `sessions` are ever sent and not yet recorded. What
    # needs no session (opening the address, rendering the text) is done before the turn.
    turns = asyncio.Semaphore(sessions)

    async def send(uow: UnitOfWork, command: domain.SendEmail, event: Event) -> Sequence[Model]:
        message = await prepare(command)
        async with turns:
            # Sent already by a batch that did not commit (a crash): record it, do not resend.
            if not await sent_log.sent(command.notification_id):
                if not isinstance(message, tuple):
                    return [message]  # the customer was forgotten: nothing is sent
                try:
                    await mailer.send(*message, f"<{command.notification_id}@alur.local>")
                except Exception:
                    _failed_emails.inc()  # an attempt; the runtime retries or dead-letters it
                    raise
                await sent_log.record(command.notification_id)
        return [NotificationSentData(
            order_id=command.about.subject, notification_id=command.notification_id,
            channel="email", template=command.template, about_event_id=command.about.id)]

    async def prepare(command: domain.SendEmail) -> tuple[str, str, str] | Model:
        """(to, subject, body), or why nothing will be sent."""
        to, name = command.to.email, command.to.name
        if command.to.sealed is not None:
            try:
                who = (await open_sealed(command.to.sealed)).get("customer", {})
            except keyring.Erased:
                # Forgotten while the e-mail waited: it is not sent, and never will be.
                return NotificationFailedData(
                    order_id=command.about.subject, notification_id=command.notification_id,
                    channel="email", template=command.template,
                    about_event_id=command.about.id,
                    error="the customer was forgotten: nothing is sent to them")
            to, name = who.get("email"), who.get("name") or "customer"
        if to is None:
            raise ValueError(f"order {command.about.subject}: no e-mail address to send to")
        subject, body = render(command.about, name, command.order, command.to.locale)
        return to, subject, body

    return {domain.SendEmail: send}


def wiring(mailer: Mailer, sent_log: SentLog,
           open_sealed: keyring.OpenSealed = keyring.no_keyring,
           sessions: int = 1) -> Wiring[domain.NotificationState]:
    # Only the consumer writes a notification stream (no timers, no callbacks): its partner
    # calls need no claims. Its e-mails take turns on ALUR_SMTP_SESSIONS sessions, so a long
    # batch is a queue, not a slow partner: no order is left behind as a straggler (under
    # load that only added transactions), and nothing downstream waits on its records.
    return Wiring(DECIDER, SOURCE, commands(mailer, sent_log, open_sealed, sessions),
                  partner_calls=True, sole_writer=True)


async def build(context: Context) -> ServiceParts:
    settings = context.settings
    metrics.initialise(metrics.NOTIFICATION_DELIVERIES, ("email", "sent"), ("email", "failed"))
    mailer = SmtpMailer(settings.smtp_host, settings.smtp_port,
                        sessions=settings.smtp_sessions)
    sent_log = PostgresSentLog(context.pool)

    async def prune_sent_log() -> None:
        async def prune() -> None:
            await sent_log.prune(SENT_LOG_RETENTION)

        await every(PRUNE_EVERY, prune, "prune the sent e-mail log", log)

    return ServiceParts(wiring(mailer, sent_log, keyring.key_loader(context.pool).open,
                               settings.smtp_sessions),
                        close=mailer.close, background=[prune_sent_log])


DEFINITION = ServiceDefinition(
    name="notifications", subscriptions=("orders", "payments", "shipping"),
    migrations=Path(__file__).parent / "migrations", build=build)
