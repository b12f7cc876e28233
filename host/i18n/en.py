"""English texts (the catalogue every other language must match key for key)."""

MESSAGES = {
    "format.date": "EEE d MMM yyyy",
    "format.datetime": "d MMM yyyy HH:mm",
    # states and stop reasons (host/losses.STATES, REASONS)
    "state.RUN": "RUN", "state.IDLE": "IDLE", "state.STOP": "STOP", "state.OFF": "OFF",
    "state.UNKNOWN": "UNKNOWN",
    "reason.setup": "Setup", "reason.planned_maintenance": "Planned maintenance",
    "reason.breakdown": "Breakdown", "reason.no_order": "No order", "reason.material": "Material",
    "reason.other": "Other",
    # `oee report` tables (host/report/oee_tables.py)
    "report.title": "OEE {start} .. {end}",
    "report.all": "all",  # the plant row
    "report.head.machine": "machine", "report.head.good": "good", "report.head.ng": "NG",
    "report.head.coverage": "coverage", "report.head.planned_h": "planned h",
    "report.head.run_h": "run h", "report.head.unknown_h": "unknown h",
    "report.losses": "six big losses and planned maintenance (minutes)",
    "loss.breakdown": "breakdown", "loss.setup": "setup", "loss.pm": "PM", "loss.minor": "minor",
    "loss.speed": "speed", "loss.defects": "defects", "loss.startup": "startup",
    "loss.wide.breakdown": "breakdown", "loss.wide.setup": "setup",
    "loss.wide.pm": "planned maint.", "loss.wide.minor": "minor stops",
    "loss.wide.speed": "reduced speed", "loss.wide.defects": "process defects",
    "loss.wide.startup": "startup rejects",
    "report.legend": "PM: planned maintenance; minor: minor stops; speed: reduced speed",
    "report.left_out": "plant P, Q, OEE: without {machines} (no ideal_cycle_s)",
    "report.units": "plant output: {units}",
    "report.unit": "{good} good, {ng} NG {unit}",
    "report.unknown": "{machine}: output in unknown time: {good} good, {ng} NG (in Q, not in P)",
    "report.outside": "{machine}: counted outside planned time: {good} good, {ng} NG (left out)",
    "report.warning": "warning: {text}",
    "warn.clock_forward": "the host clock stepped forward by {step} s at {at}: the time it "
                          "skipped is unknown time",
    "warn.clock_back": "the host clock stepped back by {step} s at {at}: event time stood "
                       "still until it caught up; output made meanwhile is output in unknown "
                       "time",
    "warn.performance": "{machine}: performance {p} is above 100%: its ideal_cycle_s is too "
                        "slow, or its counts are doubled",
    # `oee reconcile` (host/report/reconcile_tables.py)
    "rec.title": "Logbook and sensor, {start} .. {end}",
    "rec.tolerances": "tolerances: {minutes} min of time, {output} of output, coverage at "
                      "least {coverage}",
    "rec.period": "{machine} · shift {shift} · {date} · logbook row {row} ({period})",
    "rec.pp": "{diff} pp",
    "rec.col.logbook": "logbook", "rec.col.sensor": "sensor", "rec.col.diff": "difference",
    "rec.fig.planned_min": "planned time (min)", "rec.fig.run_min": "run time (min)",
    "rec.fig.pm_min": "planned maintenance (min)", "rec.fig.setup_min": "setup (min)",
    "rec.fig.breakdown_min": "breakdown (min)", "rec.fig.unrecorded_min": "unrecorded stops (min)",
    "rec.fig.good": "good", "rec.fig.ng": "NG", "rec.fig.availability": "availability (A)",
    "rec.fig.performance": "performance (P)", "rec.fig.quality": "quality (Q)",
    "rec.fig.oee": "OEE", "rec.fig.coverage": "sensor coverage",
    "rec.flag.unrecorded_stop": "unrecorded stop: the sensor saw {minutes} min more downtime "
                                "than the logbook records",
    "rec.flag.logbook_down_running": "logbook downtime with the machine running: the lamp "
                                     "showed running for {minutes} min the logbook gives as "
                                     "downtime",
    "rec.flag.output_mismatch": "output mismatch: the sensor counted {diff} against the "
                                "logbook",
    "rec.flag.sensor_gap": "sensor gap: {minutes} min of planned time without sensor data",
    "rec.flag.planned_time": "planned time differs: the logbook's available time and the "
                             "calendar's differ by {minutes} min",
    "rec.ok": "agrees within the tolerances",
    "rec.unmatched": "logbook row {row} ({period}) not matched: {why}",
    "rec.why.no_columns": "it has no date and shift",
    "rec.why.no_shift": "the calendar has no shift {shift} on {date}",
    "rec.why.no_machine": "no machine {machine} in the config",
    "rec.unlogged": "{machine}: shift {shift} on {date} has sensor data but no logbook row",
    "rec.none": "no logbook period in this window",
    # the shift sheet (host/report/sheet.py)
    "sheet.title": "Shift sheet", "sheet.heading": "{machine} · shift {shift} · {date}",
    "sheet.window": "{start} to {end}", "sheet.timeline": "Timeline",
    "sheet.figures": "Figures", "sheet.stops": "Stops and their reasons",
    "sheet.col.from": "from", "sheet.col.to": "to", "sheet.col.minutes": "minutes",
    "sheet.col.state": "state", "sheet.col.reason": "reason", "sheet.no_stops": "no stops",
    "sheet.more_stops": "{n} more stops, {minutes} min in all",
    "sheet.no_reason": "not given", "sheet.reconcile": "Against the logbook",
    "sheet.no_logbook": "no logbook row for this shift",
    "sheet.sign.supervisor": "Shift supervisor", "sheet.sign.technician": "Technician",
    "sheet.sign.name": "Name", "sheet.sign.signature": "Signature",
    "sheet.footer": "lampwatch, from the collector's journal, {made}",
    "sheet.unit": "output in {unit}",
    # the Andon board (host/board/static/)
    "board.title": "lampwatch Andon board", "board.plant_oee": "PLANT OEE",
    "board.good": "good", "board.ng": "NG", "board.running": "running", "board.idle": "idle",
    "board.stopped": "stopped", "board.off": "off", "board.unknown": "unknown",
    "board.offline": "NO CONNECTION TO THE COLLECTOR – figures are not live",
    "board.reason_for": "Stop reason for", "board.pin": "PIN", "board.cancel": "Cancel",
    "board.save": "Save", "board.reason_button": "Reason…", "board.shift": "shift {shift}",
    "board.no_shift": "no shift running", "board.choose": "Choose a reason.",
    "board.saving": "Saving…", "board.saved": "Saved.",
    "board.no_connection": "No connection to the collector.",
    "board.wrong_pin": "Wrong PIN, or the board is read-only.",
    "board.wait": "Too many wrong PINs: wait and try again.",
    "board.not_saved": "Not saved (error {status}).",
    "board.print": "Print shift sheet",
    "board.w.no_data": "no data yet", "board.w.silent": "node silent",
    "board.w.silent_for": "silent {duration}", "board.w.no_state": "no lamp state yet",
    "board.w.coverage": "coverage {coverage}",
}
