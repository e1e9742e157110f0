#!/usr/bin/env python3
"""ctest shard.server: the shard server under 50 bots and bad clients, over loopback.

Starts shard_server on 127.0.0.1 (port 0: the kernel picks one; the server writes it to
--port-file), runs shard_bots against it (50 bots, session churn, zone changes,
instances, plus one bad client of every kind and then some), waits until the server
reports itself quiescent (no session, no instance, memory measured), sends SIGTERM and
checks, from the bots' report, the server's report and its log:

  - every bot was served with zero errors (no ERROR frame, no malformed frame, no
    timeout, no disconnect it did not ask for);
  - every bad client was closed with its documented reason, the server logged that
    reason and counted it (closes by reason, protocol_errors);
  - every instance that opened was closed, and in the kit mode torn down with
    release_all;
  - after everyone left, the allocator's live blocks and the process RSS are back to
    their baseline (taken the same way before the first session) within the margins
    below;
  - SIGTERM shuts the server down cleanly: a player still online gets BYE (server
    shutdown) before the end of its stream, exit status 0, report written.

Scale: RAMALLOC_STRESS_SCALE (default 1) multiplies the bots' play time (3 s at 1).
Every wait is bounded; the whole test takes about 10 s at scale 1 in a Debug build.
"""

import argparse
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

# Margins for "back to baseline" (also in examples/shard_server/README.md).
# Live blocks: the persistent zones keep running while the bots play, so their NPCs'
# projectiles and per-tick scratch come and go; grids and maps keep their grown
# capacity (same block count, bigger blocks). 1% of the baseline or 32 blocks covers it.
LIVE_BLOCKS_MARGIN_FRACTION = 0.01
LIVE_BLOCKS_MARGIN_MIN = 32
# RSS: what the kit does not own (glibc's arenas behind Asio's and spdlog's own
# allocations, the kernel's socket buffers accounted to us, thread stacks touched
# deeper) may stay. 10% of the baseline or 2 MiB.
RSS_MARGIN_FRACTION = 0.10
RSS_MARGIN_MIN_KB = 2 * 1024

BAD_KINDS = ["malformed_frame", "frame_too_large", "unknown_opcode", "not_logged_in",
             "flood", "slow_reader", "half_open", "abrupt_close"]
# The server's close reason(s) for each kind of bad client.
EXPECTED_REASONS = {
    "malformed_frame": ["malformed_frame"],
    "frame_too_large": ["frame_too_large"],
    "unknown_opcode": ["unknown_opcode"],
    "not_logged_in": ["not_logged_in"],
    "flood": ["flood"],
    "slow_reader": ["send_queue_overflow", "write_timeout"],
    "half_open": ["idle_timeout"],
    "abrupt_close": ["connection_reset", "peer_closed"],
}
PROTOCOL_ERROR_KINDS = ["malformed_frame", "frame_too_large", "unknown_opcode",
                        "not_logged_in", "flood"]
# Bad clients that log in before misbehaving (their sessions count as served).
LOGGING_IN_KINDS = ["malformed_frame", "frame_too_large", "unknown_opcode", "flood",
                    "slow_reader", "abrupt_close"]


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


class LineReader(threading.Thread):
    """Collects a process's stdout lines with arrival times."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream = stream
        self.lines = []
        self.cv = threading.Condition()

    def run(self):
        for line in self.stream:
            with self.cv:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self.cv.notify_all()
        with self.cv:
            self.lines.append((time.monotonic(), None))
            self.cv.notify_all()

    def wait_for(self, prefix, after, timeout):
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for t, line in self.lines:
                    if line is None:
                        raise Failure(f"server exited while waiting for '{prefix}'")
                    if t >= after and line.startswith(prefix):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failure(f"no '{prefix}' line from the server within {timeout} s")
                self.cv.wait(left)


def read_frames(sock, until):
    """Reads server frames (opcode, payload) until `until(opcode)` holds, or to the end
    of the stream when `until` is None."""
    buf, frames = b"", []
    while True:
        while len(buf) >= 2:
            n = struct.unpack("<H", buf[:2])[0]
            if len(buf) < 2 + n:
                break
            frames.append((buf[2], buf[3:2 + n]))
            buf = buf[2 + n:]
            if until is not None and until(frames[-1][0]):
                return frames
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            return frames
        if not chunk:
            return frames
        buf += chunk


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True)
    ap.add_argument("--bots-program", required=True)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--bots", type=int, default=50)
    ap.add_argument("--bad-clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--rss-check", type=int, default=1)
    ap.add_argument("--plain", action="store_true")
    a = ap.parse_args()

    scale = float(os.environ.get("RAMALLOC_STRESS_SCALE", "1") or "1")
    duration = a.duration if a.duration is not None else 3.0 * scale
    os.makedirs(a.work_dir, exist_ok=True)
    port_file = os.path.join(a.work_dir, "port")
    report_file = os.path.join(a.work_dir, "report.json")
    log_file = os.path.join(a.work_dir, "server.log")
    for f in (port_file, report_file):
        if os.path.exists(f):
            os.remove(f)

    cmd = [a.server, "--port", "0", "--port-file", port_file, "--report-json", report_file,
           "--workers", "2", "--zones", "3", "--npcs", "60", "--dungeons", "2",
           "--max-instances", "8", "--instance-capacity", "4",
           "--instance-linger-ms", "200", "--instance-lifetime-ms", "1500",
           "--idle-timeout-ms", "1000", "--write-timeout-ms", "1000",
           "--send-queue-cap", "32768", "--socket-sndbuf", "16384", "--stats-period-ms", "1000", "--log-level", "info"]
    if a.plain:
        cmd.append("--plain")
    print("server:", " ".join(cmd), flush=True)
    log = open(log_file, "w")
    srv = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    out = LineReader(srv.stdout)
    out.start()
    try:
        out.wait_for("listening ", 0, 60)
        port = int(open(port_file).read().strip())
        check(0 < port < 65536, f"bad port in {port_file}")

        bots_cmd = [a.bots_program, "--server", f"127.0.0.1:{port}", "--bots", str(a.bots),
                    "--duration", str(duration), "--bad-clients", str(a.bad_clients),
                    "--profile", "churn", "--timeout-ms", "10000"]
        print("bots:", " ".join(bots_cmd), flush=True)
        try:
            b = subprocess.run(bots_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, timeout=120 + duration)
        except subprocess.TimeoutExpired:
            raise Failure("shard_bots did not finish in time")
        bots_done = time.monotonic()
        lines = [l for l in b.stdout.splitlines() if l.startswith("{")]
        check(lines, f"shard_bots printed no report (exit {b.returncode}): {b.stderr[-2000:]}")
        bots = json.loads(lines[-1])
        print("bots report:", json.dumps({k: v for k, v in bots.items()
                                          if k != "ping_rtt_hist"}), flush=True)

        # Everyone has left; the server measures itself once it has been quiet a while.
        q = out.wait_for("quiescent ", bots_done, 60)
        print("server:", q, flush=True)
        # One player still online when SIGTERM comes must be told: BYE (server shutdown),
        # then the end of the stream.
        player = socket.create_connection(("127.0.0.1", port), timeout=30)
        name = b"last-player"
        player.sendall(struct.pack("<HBHB", 1 + 2 + 1 + len(name), 0x01, 1, len(name)) + name)
        frames = read_frames(player, until=lambda op: op == 0x82)  # ZONE_ENTERED
        check(frames and frames[0][0] == 0x81, f"no LOGIN_OK for the last player: {frames}")
        srv.send_signal(signal.SIGTERM)
        frames = read_frames(player, until=None)
        byes = [p for op, p in frames if op == 0x88]
        check(byes and struct.unpack("<H", byes[-1])[0] == 1,
              f"the last player got no BYE (server shutdown) before the end: "
              f"{[hex(op) for op, _ in frames][-5:]}")
        player.close()
        try:
            rc = srv.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise Failure("server did not exit within 60 s of SIGTERM")
        check(rc == 0, f"server exited with status {rc} after SIGTERM")
        check(os.path.exists(report_file), "server wrote no --report-json file")
        rep = json.load(open(report_file))
        server_log = open(log_file).read()

        # --- every bot served, zero errors -----------------------------------------
        errs = bots["errors"]
        check(errs["total"] == 0 and bots["protocol_errors"] == 0,
              f"bots saw errors: {errs}; first: {bots.get('first_errors')}")
        check(bots["logins"] >= a.bots, f"only {bots['logins']} logins for {a.bots} bots")
        check(bots["logins"] == bots["sessions"],
              f"{bots['sessions']} bot sessions but {bots['logins']} logins")
        check(bots["moves"] > 0 and bots["ping_rtt"]["count"] > 0 and
              bots["move_rtt"]["count"] > 0, "bots measured no round trips")
        check(bots["zone_changes"] > 0 and bots["instance_entries"] > 0 and
              bots["reconnects"] > 0, f"the churn profile did not churn: {bots}")

        # --- every bad client closed with its reason -------------------------------
        closes = rep["closes"]
        runs = {k: bots["bad_clients"][k]["run"] for k in BAD_KINDS}
        for kind in BAD_KINDS:
            got = bots["bad_clients"][kind]
            check(got["ok"] == got["run"],
                  f"bad client '{kind}': {got['ok']} of {got['run']} closed as documented; "
                  f"first errors: {bots.get('first_errors')}")
            counted = sum(closes.get(r, 0) for r in EXPECTED_REASONS[kind])
            check(counted == runs[kind],
                  f"'{kind}': server counted {counted} closes {EXPECTED_REASONS[kind]}, "
                  f"expected {runs[kind]} (closes: {closes})")
            if runs[kind]:
                check(any(f"closed: {r}" in server_log for r in EXPECTED_REASONS[kind]),
                      f"no 'closed: {EXPECTED_REASONS[kind]}' line in the server log")
        expected_errors = sum(runs[k] for k in PROTOCOL_ERROR_KINDS)
        check(rep["protocol_errors"] == expected_errors,
              f"server counted {rep['protocol_errors']} protocol errors, expected "
              f"{expected_errors}")
        check(closes.get("logout", 0) == bots["logins"],
              f"{closes.get('logout', 0)} logouts for {bots['logins']} bot logins")
        bad_logins = sum(runs[k] for k in LOGGING_IN_KINDS)
        check(rep["sessions"]["served"] == bots["logins"] + bad_logins + 1,
              f"server served {rep['sessions']['served']} sessions, expected "
              f"{bots['logins']} + {bad_logins} + the last player")
        check(rep["sessions"]["accepted"] == bots["sessions"] + a.bad_clients + 1,
              f"server accepted {rep['sessions']['accepted']}, expected "
              f"{bots['sessions']} + {a.bad_clients} + the last player")
        check(closes.get("server_shutdown", 0) == 1,
              f"{closes.get('server_shutdown', 0)} sessions closed by the shutdown, expected 1")

        # --- instances opened and closed -------------------------------------------
        inst = rep["instances"]
        check(inst["opened"] > 0, "no instance was opened")
        check(inst["closed"] == inst["opened"],
              f"{inst['opened']} instances opened, {inst['closed']} closed")
        if rep["mode"] == "kit":
            check(inst["release_all_calls"] >= inst["closed"],
                  f"{inst['closed']} instances closed but release_all ran "
                  f"{inst['release_all_calls']} times")

        # --- memory back to baseline ------------------------------------------------
        base = rep["baseline"]
        check(rep["quiescent"], "the report has no quiescent measurement")
        after = rep["quiescent"][-1]
        if rep["mode"] == "kit":
            margin = max(LIVE_BLOCKS_MARGIN_MIN,
                         int(base["live_blocks"] * LIVE_BLOCKS_MARGIN_FRACTION))
            print(f"live blocks: baseline {base['live_blocks']}, after {after['live_blocks']} "
                  f"(margin {margin})", flush=True)
            check(after["live_blocks"] <= base["live_blocks"] + margin,
                  f"live blocks {after['live_blocks']} after everyone left, baseline "
                  f"{base['live_blocks']} + margin {margin}")
        rss_margin = max(RSS_MARGIN_MIN_KB, int(base["rss_kb"] * RSS_MARGIN_FRACTION))
        print(f"rss: baseline {base['rss_kb']} KiB, after {after['rss_kb']} KiB, peak "
              f"{rep['peak_rss_kb']} KiB (margin {rss_margin} KiB, "
              f"{'checked' if a.rss_check else 'not checked under a sanitizer'})", flush=True)
        if a.rss_check:
            check(after["rss_kb"] <= base["rss_kb"] + rss_margin,
                  f"RSS {after['rss_kb']} KiB after everyone left, baseline "
                  f"{base['rss_kb']} KiB + margin {rss_margin} KiB")

        # --- clean shutdown ---------------------------------------------------------
        check(rep["sessions"]["live_at_exit"] == 0, "sessions left at exit")
        check("stopped" in server_log, "no 'stopped' line in the server log")
        t = rep["tick"]["persistent"]
        print(f"tick (persistent zones): p50 {t['p50_us']:.0f} us, p99 {t['p99_us']:.0f} us, "
              f"max {t['max_us']:.0f} us over {t['count']} ticks", flush=True)
        print("shard.server: all checks passed", flush=True)
        return 0
    except Failure as e:
        print(f"FAILED: {e}", file=sys.stderr, flush=True)
        print(f"(server log: {log_file})", file=sys.stderr)
        try:
            print(open(log_file).read()[-4000:], file=sys.stderr)
        except OSError:
            pass
        return 1
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()


if __name__ == "__main__":
    sys.exit(main())
