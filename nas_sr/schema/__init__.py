"""Every job's options in one typed place: defaults, one-line descriptions, bounds."""

from nas_sr.schema.fields import check_fields, describe
from nas_sr.schema.jobs import SCHEMAS, register

__all__ = ["SCHEMAS", "check_fields", "describe", "register"]
