from __future__ import annotations

import time
from datetime import date

from django.core.management.base import CommandParser
from django.utils import timezone
from tqdm import tqdm

from compliance.demo import demo_data_seed
from kgc.commands import ProjectCommand, iso_date, positive_int


class Command(ProjectCommand):
    help = "Load deterministic demo data: tenants with staff in every role, clients, documents and filings."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenants", type=positive_int, default=10)
        parser.add_argument("--clients-per-tenant", type=positive_int, default=20)
        parser.add_argument("--documents-per-client", type=positive_int, default=10)
        parser.add_argument("--seed", type=int, default=42, help="same seed and date, same data")
        parser.add_argument("--as-of", type=iso_date, default=None, help="YYYY-MM-DD the dates are relative to (today)")

    def handle(self, *args: object, **options: object) -> None:
        as_of: date = options["as_of"] or timezone.localdate()  # type: ignore[assignment]
        tenants: int = options["tenants"]  # type: ignore[assignment]
        started = time.monotonic()
        with tqdm(total=tenants, unit="tenant", disable=options["verbosity"] == 0 or tenants < 20) as bar:  # type: ignore[operator]
            result = demo_data_seed(
                tenants=tenants,
                clients_per_tenant=options["clients_per_tenant"],  # type: ignore[arg-type]
                documents_per_client=options["documents_per_client"],  # type: ignore[arg-type]
                seed=options["seed"],  # type: ignore[arg-type]
                as_of=as_of,
                on_tenant=bar.update,
            )
        self.stdout.write(
            f"Demo data as of {as_of}: {result.tenants_created} tenants created, "
            f"{result.tenants_skipped} already present; "
            f"{result.clients} clients, {result.documents} documents, {result.filings} filings written "
            f"in {time.monotonic() - started:.1f} s"
        )
