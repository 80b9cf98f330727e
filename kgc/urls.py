from django.contrib import admin
from django.urls import path

from kgc import views

admin.site.site_header = "KGC Compliance Cloud: jobs console"
admin.site.site_title = "KGC jobs console"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
