"""Reports read from the journal and from logbooks: OEE per machine, logbook OEE, node status."""

# The CLI offers these as choices before it imports a report module, so `lampwatch --help`
# stays light; tests/test_cli_lazy.py checks they match oee_report.FORMATS and
# logbook.SEPARATORS.
REPORT_FORMATS = ("csv", "json", "table")
LOGBOOK_LOCALES = ("en", "id")
LANGS = ("en", "id")  # host/i18n.LANGS: the tables' --lang (tests/test_i18n.py)
