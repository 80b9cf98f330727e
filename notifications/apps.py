from django.apps import AppConfig
from django.core import checks


class NotificationsConfig(AppConfig):
    name = "notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        checks.register(check_local_hours)
        from anymail.signals import tracking as tracking_signal

        from notifications.tracking import tracking_event_receive

        tracking_signal.connect(tracking_event_receive, dispatch_uid="notifications.tracking_event_receive")

        from kgc.queue.jobs import retry_hold_register
        from kgc.queue.signals import jobs_retried
        from notifications.delivery import SEND_JOB_DELIVERY_UNKNOWN, send_jobs_retried

        jobs_retried.connect(send_jobs_retried, dispatch_uid="notifications.send_jobs_retried")
        retry_hold_register(SEND_JOB_DELIVERY_UNKNOWN)

        # The email queue's work items are the outbox's rows: the dispatcher consumes them in
        # every worker serving the queue, and the reader answers for the queue's counts.
        from kgc.queue.rows import RowQueue, row_queue_register
        from kgc.queues import EMAIL
        from notifications.dispatcher import EmailDispatcher
        from notifications.outbox import EmailQueueReader

        row_queue_register(RowQueue(name=EMAIL, consumer=EmailDispatcher, reader=EmailQueueReader()))


def check_local_hours(app_configs: object = None, **kwargs: object) -> list[checks.CheckMessage]:
    """A digest hour not after the reminder hour works, but sends each morning's items a day late."""
    from django.conf import settings

    reminder, digest = settings.KGC_REMINDER_HOUR, settings.KGC_DIGEST_HOUR
    if digest > reminder:
        return []
    return [
        checks.Warning(
            f"KGC_DIGEST_HOUR ({digest}) is not after KGC_REMINDER_HOUR ({reminder}): each morning's reminders "
            "miss that day's digest and wait for the next day's",
            hint="Set KGC_DIGEST_HOUR later than KGC_REMINDER_HOUR (the defaults are 9 and 8).",
            id="notifications.W001",
        )
    ]
