"""Builds the notifications service: an e-mail per customer-facing event, sent once."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from alur.runtime import metrics
from alur.runtime.aggregate import Decider, Perform, handler_for
from alur.runtime.ports import UnitOfWork
from alur.runtime.processing import Handler
from alur.runtime.worker import ServiceDefinition, ServiceParts
from alur.settings import Settings
from schemas import Event, Model, NotificationSentData
from services.notifications import domain
from services.notifications.mailer import Mailer, SmtpMailer
from services.notifications.templates import render

SOURCE = "alur/notifications"
DECIDER = Decider(domain.NotificationState(), domain.evolve, domain.decide, domain.RELEVANT,
                  domain.OUTCOMES, opens=domain.OPENS, precede=domain.PRECEDE,
                  refuse=domain.refuse)
_failed_emails = metrics.NOTIFICATION_DELIVERIES.labels("email", "failed")


def make_perform(mailer: Mailer) -> Perform:
    async def perform(uow: UnitOfWork, command: object, event: Event) -> Sequence[Model]:
        if not isinstance(command, domain.SendEmail):
            raise TypeError(f"unknown command {command!r}")
        subject, body = render(command.about, command.to.name)
        try:
            await mailer.send(command.to.email, subject, body,
                              f"<{command.notification_id}@alur.local>")
        except Exception:
            _failed_emails.inc()  # an attempt; the runtime retries or dead-letters the event
            raise
        return [NotificationSentData(
            order_id=command.about.subject, notification_id=command.notification_id,
            channel="email", template=command.template, about_event_id=command.about.id)]

    return perform


def make_handler(mailer: Mailer) -> Handler:
    return handler_for(DECIDER, source=SOURCE, perform=make_perform(mailer))


async def build(settings: Settings, pool: asyncpg.Pool) -> ServiceParts:
    metrics.initialise(metrics.NOTIFICATION_DELIVERIES, ("email", "sent"), ("email", "failed"))
    mailer = SmtpMailer(settings.smtp_host, settings.smtp_port)
    return ServiceParts(handler=make_handler(mailer), close=mailer.close)


DEFINITION = ServiceDefinition(
    name="notifications", subscriptions=("orders", "payments", "shipping"), migrations=None,
    build=build)
