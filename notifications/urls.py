"""The pages an email's links open (included at ``/notifications/``)."""

from django.urls import URLPattern, path

from notifications import views

app_name = "notifications"

urlpatterns: list[URLPattern] = [
    path("unsubscribe/<str:token>", views.unsubscribe, name="unsubscribe"),
    path("preferences/<str:token>", views.preferences_page, name="preferences"),
]
