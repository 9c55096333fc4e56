from django.core.management.base import BaseCommand, CommandError

from portal.credentials import create_api_credential


class Command(BaseCommand):
    help = "Create an API credential and print its key and secret (the secret is shown only now)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Who will use it, e.g. 'Billing system'.")

    def handle(self, *args, name, **options):
        if not name.strip():
            raise CommandError("Give the credential a name.")
        credential, secret = create_api_credential(name=name)
        self.stdout.write(f"key={credential.key}")
        self.stdout.write(f"secret={secret}")
