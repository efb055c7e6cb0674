from geo_lead.cli import entry

entry()
