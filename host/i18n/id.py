"""Teks Bahasa Indonesia: the terms Indonesian plants use (Ketersediaan, Kinerja, Kualitas)."""

# A, P and Q stay the formula's letters (OEE = A x P x Q) and NG the shop floor's word for a
# reject; the legend under a table spells the letters out. "Sif" is KBBI's spelling of shift.
MESSAGES = {
    "format.date": "EEEE, d MMM yyyy",
    "format.datetime": "d MMM yyyy HH:mm",
    "state.RUN": "JALAN", "state.IDLE": "SIAGA", "state.STOP": "BERHENTI", "state.OFF": "MATI",
    "state.UNKNOWN": "TAK DIKETAHUI",
    "reason.setup": "Penyetelan", "reason.planned_maintenance": "Perawatan terencana",
    "reason.breakdown": "Kerusakan", "reason.no_order": "Tidak ada pesanan",
    "reason.material": "Bahan", "reason.other": "Lainnya",
    "report.title": "OEE {start} .. {end}",
    "report.all": "semua",  # the plant row
    "report.head.machine": "mesin", "report.head.good": "baik", "report.head.ng": "NG",
    "report.head.coverage": "cakupan", "report.head.planned_h": "jam rencana",
    "report.head.run_h": "jam jalan", "report.head.unknown_h": "jam tak tahu",
    "report.losses": "enam kerugian besar dan perawatan terencana (menit)",
    "loss.breakdown": "rusak", "loss.setup": "setel", "loss.pm": "PT", "loss.minor": "henti",
    "loss.speed": "lambat", "loss.defects": "cacat", "loss.startup": "awal",
    "loss.wide.breakdown": "kerusakan", "loss.wide.setup": "penyetelan",
    "loss.wide.pm": "perawatan terencana", "loss.wide.minor": "henti singkat",
    "loss.wide.speed": "kecepatan turun", "loss.wide.defects": "cacat proses",
    "loss.wide.startup": "cacat awal produksi",
    "report.legend": "A: ketersediaan; P: kinerja; Q: kualitas; rusak: kerusakan; setel: "
                     "penyetelan; PT: perawatan terencana; henti: henti singkat; lambat: "
                     "kecepatan turun; cacat: cacat proses; awal: cacat awal produksi",
    "report.left_out": "P, Q, OEE pabrik: tanpa {machines} (tanpa ideal_cycle_s)",
    "report.units": "keluaran pabrik: {units}",
    "report.unit": "{good} baik, {ng} NG {unit}",
    "report.unknown": "{machine}: keluaran pada waktu tak diketahui: {good} baik, {ng} NG "
                      "(masuk Q, tidak masuk P)",
    "report.outside": "{machine}: terhitung di luar waktu terencana: {good} baik, {ng} NG "
                      "(tidak dihitung)",
    "report.config": "versi konfigurasi {version} ({hash}) dari {start} sampai {end}",
    "report.config_none": "tidak ada versi konfigurasi tercatat dari {start} sampai {end}: "
                          "konfigurasi yang diberikan",
    "report.warning": "peringatan: {text}",
    "warn.clock_forward": "jam komputer pengumpul maju {step} detik pada {at}: waktu yang "
                          "dilompati adalah waktu tak diketahui",
    "warn.clock_back": "jam komputer pengumpul mundur {step} detik pada {at}: waktu kejadian "
                       "diam sampai jam menyusul; keluaran selama itu adalah keluaran pada "
                       "waktu tak diketahui",
    "warn.performance": "{machine}: kinerja {p} di atas 100%: ideal_cycle_s terlalu lambat, "
                        "atau hitungannya ganda",
    "calc.head.period": "periode", "calc.head.run_min": "menit jalan",
    "calc.head.availability": "ketersediaan", "calc.head.performance": "kinerja",
    "calc.head.quality": "kualitas", "calc.total": "JUMLAH",
    "calc.undefined": "(-: tak terdefinisi: tanpa waktu jalan, atau tanpa keluaran; lihat "
                      "docs/oee.md)",
    "rec.title": "Catatan dan sensor, {start} .. {end}",
    "rec.tolerances": "toleransi: waktu {minutes} menit, keluaran {output}, cakupan paling "
                      "sedikit {coverage}",
    "rec.period": "{machine} · sif {shift} · {date} · baris catatan {row} ({period})",
    "rec.pp": "{diff} poin",
    "rec.col.logbook": "catatan", "rec.col.sensor": "sensor", "rec.col.diff": "selisih",
    "rec.fig.planned_min": "waktu terencana (menit)", "rec.fig.run_min": "waktu jalan (menit)",
    "rec.fig.pm_min": "perawatan terencana (menit)", "rec.fig.setup_min": "penyetelan (menit)",
    "rec.fig.breakdown_min": "kerusakan (menit)",
    "rec.fig.unrecorded_min": "henti tak tercatat (menit)",
    "rec.fig.good": "baik", "rec.fig.ng": "NG", "rec.fig.availability": "ketersediaan (A)",
    "rec.fig.performance": "kinerja (P)", "rec.fig.quality": "kualitas (Q)",
    "rec.fig.oee": "OEE", "rec.fig.coverage": "cakupan sensor",
    "rec.flag.unrecorded_stop": "henti tak tercatat: sensor melihat {minutes} menit henti "
                                "lebih banyak dari catatan",
    "rec.flag.logbook_down_running": "catatan mencatat henti saat mesin jalan: lampu "
                                     "menunjukkan jalan selama {minutes} menit yang dicatat "
                                     "sebagai henti",
    "rec.flag.output_mismatch": "keluaran tidak cocok: sensor menghitung {diff} terhadap "
                                "catatan",
    "rec.flag.sensor_gap": "celah sensor: {minutes} menit waktu terencana tanpa data sensor",
    "rec.flag.planned_time": "waktu terencana berbeda: waktu tersedia di catatan dan di "
                             "kalender berselisih {minutes} menit",
    "rec.wide.legend": "tiap angka: catatan / sensor (menit, keluaran, OEE)",
    "rec.wide.machine": "mesin", "rec.wide.date": "tanggal", "rec.wide.shift": "sif",
    "rec.wide.row": "baris", "rec.wide.planned": "rencana", "rec.wide.run": "jalan",
    "rec.wide.down": "henti", "rec.wide.unrecorded": "tak tercatat", "rec.wide.good": "baik",
    "rec.wide.ng": "NG", "rec.wide.oee": "OEE", "rec.wide.coverage": "cakupan",
    "rec.wide.flags": "temuan",
    "rec.cause.unrecorded_stop": "henti tak tercatat",
    "rec.cause.logbook_down_running": "henti tercatat saat jalan",
    "rec.cause.output_mismatch": "keluaran", "rec.cause.sensor_gap": "celah sensor",
    "rec.cause.planned_time": "waktu terencana",
    "rec.ok": "cocok dalam toleransi",
    "rec.unmatched": "baris catatan {row} ({period}) tidak dicocokkan: {why}",
    "rec.why.no_columns": "tidak ada tanggal dan sif",
    "rec.why.no_shift": "kalender tidak punya sif {shift} pada {date}",
    "rec.why.no_machine": "tidak ada mesin {machine} di konfigurasi",
    "rec.unlogged": "{machine}: sif {shift} pada {date} punya data sensor tetapi tidak ada "
                    "baris catatan",
    "rec.none": "tidak ada periode catatan dalam rentang ini",
    "sheet.title": "Lembar sif", "sheet.heading": "{machine} · sif {shift} · {date}",
    "sheet.window": "{start} sampai {end}", "sheet.timeline": "Lini masa",
    "sheet.figures": "Angka", "sheet.stops": "Henti dan penyebabnya",
    "sheet.col.from": "dari", "sheet.col.to": "sampai", "sheet.col.minutes": "menit",
    "sheet.col.state": "keadaan", "sheet.col.reason": "penyebab",
    "sheet.no_stops": "tidak ada henti",
    "sheet.more_stops": "{n} henti lainnya, {minutes} menit seluruhnya",
    "sheet.no_reason": "tidak diisi", "sheet.reconcile": "Dibandingkan dengan catatan",
    "sheet.no_logbook": "tidak ada baris catatan untuk sif ini",
    "sheet.sign.supervisor": "Pengawas sif", "sheet.sign.technician": "Teknisi",
    "sheet.sign.name": "Nama", "sheet.sign.signature": "Tanda tangan",
    "sheet.footer": "lampwatch, dari jurnal pengumpul, {made}",
    "sheet.unit": "keluaran dalam {unit}",
    "board.title": "Papan Andon lampwatch", "board.plant_oee": "OEE PABRIK",
    "board.good": "baik", "board.ng": "NG", "board.running": "jalan", "board.idle": "siaga",
    "board.stopped": "berhenti", "board.off": "mati", "board.unknown": "tak diketahui",
    "board.offline": "TIDAK TERHUBUNG KE PENGUMPUL – angka tidak langsung",
    "board.reason_for": "Penyebab henti untuk", "board.pin": "PIN", "board.cancel": "Batal",
    "board.save": "Simpan", "board.reason_button": "Penyebab…", "board.shift": "sif {shift}",
    "board.no_shift": "tidak ada sif berjalan", "board.choose": "Pilih penyebab.",
    "board.saving": "Menyimpan…", "board.saved": "Tersimpan.",
    "board.no_connection": "Tidak terhubung ke pengumpul.",
    "board.wrong_pin": "PIN salah, atau papan hanya untuk dibaca.",
    "board.wait": "Terlalu banyak PIN salah: tunggu lalu coba lagi.",
    "board.not_saved": "Tidak tersimpan (galat {status}).",
    "board.print": "Cetak lembar sif",
    "board.w.no_data": "belum ada data", "board.w.silent": "sensor diam",
    "board.w.silent_for": "diam {duration}", "board.w.no_state": "belum ada keadaan lampu",
    "board.w.coverage": "cakupan {coverage}",
}
