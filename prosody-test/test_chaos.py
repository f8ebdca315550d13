"""End-to-end: the short version of `make chaos` (prosody-test/chaos.py).
Every phase of the fault run, under steady c2s load, must give each stanza
a reply or a stanza error (or the nothing the contract asks for), never two
answers, and leave Prosody's fds, threads and memory near where they were.
Counts only, never timings: the table is printed, not judged."""

import unittest

import chaos

# How far above the warmed-up level (after the steady phase) a phase may
# leave Prosody. Connections the module keeps for reuse, one per
# conversation at most, come and go; a leak per stanza, request or reload
# (hundreds of each) does not fit.
FD_SLACK = 16
THREAD_SLACK = 4
RSS_SLACK_MIB = 48


class ChaosTest(unittest.TestCase):
    def test_every_stanza_is_answered_through_every_fault(self):
        with chaos.Run(chaos.SHORT) as run:
            rows = run.all()
            reloads = run.prosody.log().count("test reload #")
        print("\n" + chaos.table(rows), flush=True)
        by_phase = {row.phase: row for row in rows}
        for row in rows:
            with self.subTest(phase=row.phase):
                self.assertGreater(row.sent, 0, "the load ran")
                self.assertEqual(row.drops, 0, "silent drops")
                self.assertEqual(row.twice, 0, "stanzas answered twice")
                self.assertEqual(row.replies + row.errors + row.no_reply, row.sent)

        # Each fault happened: without it these phases would have no errors.
        for phase in ("service kill -9", "never answers", "5xx storm", "bad answers"):
            self.assertGreater(by_phase[phase].errors, 0, phase)
        self.assertGreater(by_phase["bad answers"].no_reply, 0, "a 200 that is not JSON: no reply")
        self.assertEqual(reloads, chaos.SHORT.reloads)
        reloaded = by_phase[f"{chaos.SHORT.reloads} reloads"]
        self.assertEqual(reloaded.errors, 0, "a reload hands over what is in flight")
        self.assertEqual(reloaded.replies, reloaded.sent)
        durable = by_phase["durable outage"]
        self.assertTrue(durable.restarted, "Prosody restarted within the outage")
        self.assertEqual(durable.errors, 0, "durable delivery: held, then delivered")
        self.assertEqual(durable.replies, durable.sent)

        level = by_phase["steady load"].after
        for row in rows[1:]:
            with self.subTest(phase=row.phase):
                self.assertLessEqual(row.after["fds"], level["fds"] + FD_SLACK)
                self.assertLessEqual(row.after["threads"], level["threads"] + THREAD_SLACK)
                self.assertLessEqual(row.after["rss"], level["rss"] + RSS_SLACK_MIB)


if __name__ == "__main__":
    unittest.main()
