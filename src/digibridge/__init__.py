"""digibridge: DigiLevering/DigiMelding (Digikoppeling WUS) to NL GOV CloudEvents webhooks."""

__version__ = "0.1.0"
