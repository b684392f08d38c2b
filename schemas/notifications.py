"""Events the notifications service publishes on the `notifications` topic."""

from __future__ import annotations

import uuid
from typing import ClassVar, Literal

from pydantic import Field

from schemas.envelope import Event, Model

NotificationChannel = Literal["email", "webhook"]


class NotificationSentData(Model):
    order_id: str
    notification_id: str
    channel: NotificationChannel
    template: str = Field(description="Template name, e.g. 'OrderPlaced.email'.")
    about_event_id: uuid.UUID = Field(description="The event the customer was told about.")


class NotificationFailedData(Model):
    order_id: str
    notification_id: str
    channel: NotificationChannel
    template: str
    about_event_id: uuid.UUID
    error: str


class _NotificationsEvent(Event):
    topic: ClassVar[str] = "notifications"


class NotificationSent(_NotificationsEvent):
    type: Literal["NotificationSent"] = "NotificationSent"
    data: NotificationSentData


class NotificationFailed(_NotificationsEvent):
    type: Literal["NotificationFailed"] = "NotificationFailed"
    data: NotificationFailedData
