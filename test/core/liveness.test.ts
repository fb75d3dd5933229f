import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../../src/base/clock.ts";
import { CorralError } from "../../src/base/errors.ts";
import { type LivenessOptions, LivenessTracker } from "../../src/core/nodes/liveness.ts";

const SECOND = 1_000;

/** minInterval 5 s, 50 heartbeats/s, suspect after 3 missed intervals, down 30 s later, ±10 % jitter. */
function makeTracker(options: Partial<LivenessOptions> = {}): {
  clock: ManualClock;
  tracker: LivenessTracker;
} {
  const clock = new ManualClock();
  const tracker = new LivenessTracker({
    clock,
    minInterval: 5 * SECOND,
    maxHeartbeatsPerSecond: 50,
    suspectAfterMissed: 3,
    downAfter: 30 * SECOND,
    jitter: 0.1,
    ...options,
  });
  return { clock, tracker };
}

describe("LivenessTracker: interval", () => {
  it("stays at the minimum for a small fleet and grows with nodeCount / rate beyond it", () => {
    const { tracker } = makeTracker();
    assert.equal(tracker.interval(0), 5 * SECOND);
    assert.equal(tracker.interval(10), 5 * SECOND);
    assert.equal(tracker.interval(250), 5 * SECOND);
    assert.equal(tracker.interval(251), 5_020);
    assert.equal(tracker.interval(1_000), 20 * SECOND);
    assert.equal(tracker.interval(10_000), 200 * SECOND);
  });

  it("keeps the controller's heartbeat load at or under the configured rate", () => {
    const { tracker } = makeTracker({ maxHeartbeatsPerSecond: 7 });
    for (const n of [1, 35, 36, 100, 999, 12_345]) {
      const perSecond = n / (tracker.interval(n) / SECOND);
      assert.ok(perSecond <= 7 + 1e-9, `${n} nodes give ${perSecond} heartbeats/s`);
    }
  });

  it("reads its settings from defaults.liveness when not given, durations as text too", () => {
    const clock = new ManualClock();
    assert.equal(new LivenessTracker({ clock }).interval(10), 5 * SECOND);
    assert.equal(new LivenessTracker({ clock }).interval(1_000), 20 * SECOND);
    assert.equal(new LivenessTracker({ clock, minInterval: "2s" }).interval(1), 2 * SECOND);
  });

  it("refuses settings that cannot work", () => {
    const clock = new ManualClock();
    const bad: Partial<LivenessOptions>[] = [
      { minInterval: 0 },
      { maxHeartbeatsPerSecond: 0 },
      { maxHeartbeatsPerSecond: Number.NaN },
      { jitter: 1 },
      { jitter: -0.1 },
      // 1.05 missed intervals: an agent jittered by +10 % would be suspected while healthy.
      { suspectAfterMissed: 1.05, jitter: 0.1 },
      { downAfter: "soon" },
    ];
    for (const options of bad)
      assert.throws(() => new LivenessTracker({ clock, ...options }), CorralError, JSON.stringify(options));
    assert.throws(() => new LivenessTracker({ clock }).interval(-1), CorralError);
  });
});

describe("LivenessTracker: nextInterval", () => {
  it("moves the interval by at most ±jitter, reaching both ends", () => {
    const { tracker } = makeTracker({ jitter: 0.1 });
    assert.equal(
      tracker.nextInterval(1_000, () => 0),
      18 * SECOND,
    );
    assert.equal(
      tracker.nextInterval(1_000, () => 0.5),
      20 * SECOND,
    );
    assert.equal(
      tracker.nextInterval(1_000, () => 1 - Number.EPSILON),
      22 * SECOND,
    );
    assert.equal(
      tracker.nextInterval(10, () => 0),
      4_500,
    );
  });

  it("spreads real random draws over the whole band and never outside it", () => {
    const { tracker } = makeTracker({ jitter: 0.1 });
    const draws = Array.from({ length: 2_000 }, () => tracker.nextInterval(1_000));
    const low = Math.min(...draws);
    const high = Math.max(...draws);
    assert.ok(low >= 18 * SECOND && high <= 22 * SECOND, `${low}..${high}`);
    // With 2 000 uniform draws, missing the outer 10 % at either end has probability 0.95^2000.
    assert.ok(low < 18_400 && high > 21_600, `draws do not spread: ${low}..${high}`);
    assert.ok(new Set(draws).size > 100);
  });

  it("gives the plain interval when jitter is 0", () => {
    const { tracker } = makeTracker({ jitter: 0 });
    assert.equal(
      tracker.nextInterval(1_000, () => 0),
      20 * SECOND,
    );
    assert.equal(
      tracker.nextInterval(1_000, () => 0.99),
      20 * SECOND,
    );
  });
});

describe("LivenessTracker: ready → suspect → down", () => {
  it("turns a silent node suspect just after 3 intervals and down just after the grace", () => {
    const { clock, tracker } = makeTracker();
    const start = clock.now();
    tracker.track("n1", "ready");
    assert.equal(tracker.lastSeen("n1"), start);

    clock.advance(15 * SECOND); // exactly 3 × 5 s: not yet
    assert.deepEqual(tracker.sweep(), []);
    assert.equal(tracker.status("n1"), "ready");

    clock.advance(1);
    assert.deepEqual(tracker.sweep(), [{ nodeId: "n1", from: "ready", to: "suspect", lastSeen: start }]);
    assert.equal(tracker.status("n1"), "suspect");
    assert.deepEqual(tracker.sweep(), [], "a transition is reported once");

    clock.advance(30 * SECOND); // exactly downAfter after becoming suspect: not yet
    assert.deepEqual(tracker.sweep(), []);
    clock.advance(1);
    assert.deepEqual(tracker.sweep(), [{ nodeId: "n1", from: "suspect", to: "down", lastSeen: start }]);
    assert.equal(tracker.status("n1"), "down");

    clock.advance(3_600 * SECOND);
    assert.deepEqual(tracker.sweep(), [], "down is the end of the line until a heartbeat");
  });

  it("keeps a node ready as long as it heartbeats within the period", () => {
    const { clock, tracker } = makeTracker();
    tracker.track("n1", "ready");
    for (let i = 0; i < 20; i++) {
      clock.advance(14 * SECOND);
      assert.equal(tracker.heartbeat("n1"), undefined);
      assert.equal(tracker.lastSeen("n1"), clock.now());
      assert.deepEqual(tracker.sweep(), []);
    }
    clock.advance(15 * SECOND + 1);
    assert.equal(tracker.sweep().length, 1);
  });

  it("takes one step per sweep even when a sweep comes very late", () => {
    const { clock, tracker } = makeTracker();
    tracker.track("n1", "ready");
    clock.advance(3_600 * SECOND);
    assert.deepEqual(
      tracker.sweep().map((t) => t.to),
      ["suspect"],
    );
    clock.advance(30 * SECOND + 1);
    assert.deepEqual(
      tracker.sweep().map((t) => t.to),
      ["down"],
    );
  });

  it("uses the interval of the current fleet size: a big fleet waits longer", () => {
    const { clock, tracker } = makeTracker();
    for (let i = 0; i < 1_000; i++) tracker.track(`n${i}`, "ready");
    clock.advance(59 * SECOND); // 3 × 20 s = 60 s for 1 000 nodes
    assert.deepEqual(tracker.sweep(), []);
    for (let i = 1; i < 1_000; i++) tracker.heartbeat(`n${i}`);
    clock.advance(1 * SECOND + 1);
    assert.deepEqual(
      tracker.sweep().map((t) => t.nodeId),
      ["n0"],
    );
  });

  it("does not suspect nodes still waiting the long interval they were told when the fleet shrinks", () => {
    const { clock, tracker } = makeTracker();
    for (let i = 0; i < 1_000; i++) tracker.track(`n${i}`, "ready");
    for (let i = 0; i < 10; i++) tracker.heartbeat(`n${i}`); // each told to wait ~20 s
    for (let i = 10; i < 1_000; i++) tracker.forget(`n${i}`); // 10 nodes left: 5 s interval
    clock.advance(40 * SECOND);
    assert.deepEqual(tracker.sweep(), [], "40 s < 3 × 20 s");
    clock.advance(20 * SECOND + 1);
    assert.equal(tracker.sweep().length, 10);
  });
});

describe("LivenessTracker: heartbeats", () => {
  it("brings a suspect node back to ready", () => {
    const { clock, tracker } = makeTracker();
    tracker.track("n1", "ready");
    clock.advance(15 * SECOND + 1);
    assert.equal(tracker.sweep().length, 1);
    clock.advance(5 * SECOND);
    assert.deepEqual(tracker.heartbeat("n1"), {
      nodeId: "n1",
      from: "suspect",
      to: "ready",
      lastSeen: clock.now(),
    });
    assert.equal(tracker.status("n1"), "ready");
    assert.equal(tracker.heartbeat("n1"), undefined, "a ready node's heartbeat is no transition");
    // The recovered node gets a whole new period and is not carried on to down by the old suspicion.
    clock.advance(15 * SECOND);
    assert.deepEqual(tracker.sweep(), []);
  });

  it("brings a down node back to ready", () => {
    const { clock, tracker } = makeTracker();
    tracker.track("n1", "ready");
    clock.advance(15 * SECOND + 1);
    tracker.sweep();
    clock.advance(30 * SECOND + 1);
    assert.equal(tracker.sweep()[0]?.to, "down");
    clock.advance(100 * SECOND);
    assert.deepEqual(tracker.heartbeat("n1"), {
      nodeId: "n1",
      from: "down",
      to: "ready",
      lastSeen: clock.now(),
    });
  });

  it("ignores heartbeats from nodes it does not track", () => {
    const { tracker } = makeTracker();
    assert.equal(tracker.heartbeat("stranger"), undefined);
    assert.equal(tracker.lastSeen("stranger"), undefined);
    assert.equal(tracker.size, 0);
  });
});

describe("LivenessTracker: tracking", () => {
  it("does not track pending or left nodes, and tracking one as left forgets it", () => {
    const { clock, tracker } = makeTracker();
    tracker.track("p", "pending");
    tracker.track("l", "left");
    tracker.track("r", "ready");
    assert.equal(tracker.size, 1);
    assert.equal(tracker.status("p"), undefined);
    tracker.track("r", "left");
    assert.equal(tracker.size, 0);
    clock.advance(3_600 * SECOND);
    assert.deepEqual(tracker.sweep(), []);
  });

  it("forget stops tracking: no transitions, no last-seen, heartbeats ignored", () => {
    const { clock, tracker } = makeTracker();
    tracker.track("a", "ready");
    tracker.track("b", "ready");
    tracker.forget("a");
    assert.equal(tracker.lastSeen("a"), undefined);
    assert.equal(tracker.heartbeat("a"), undefined);
    clock.advance(15 * SECOND + 1);
    assert.deepEqual(
      tracker.sweep().map((t) => t.nodeId),
      ["b"],
    );
    assert.deepEqual([...tracker.snapshotLastSeen().keys()], ["b"]);
  });

  it("gives every node a full period after a controller restart (last-seen starts at track time)", () => {
    const clock = new ManualClock();
    const before = new LivenessTracker({ clock });
    before.track("n1", "ready");
    clock.advance(14 * SECOND); // silent for 14 s when the controller goes away
    // A new controller process: a new tracker, fed the statuses the registry holds.
    const after = new LivenessTracker({ clock });
    after.track("n1", "ready");
    after.track("n2", "suspect");
    assert.equal(after.lastSeen("n1"), clock.now());
    clock.advance(15 * SECOND);
    assert.deepEqual(after.sweep(), [], "no node is suspected for the controller's own absence");
    clock.advance(15 * SECOND + 1);
    assert.deepEqual(
      after.sweep().map((t) => [t.nodeId, t.to]),
      [
        ["n1", "suspect"],
        ["n2", "down"],
      ],
    );
  });

  it("re-tracking a known node keeps its last-seen and restarts the clock of a changed status", () => {
    const { clock, tracker } = makeTracker();
    tracker.track("n1", "ready");
    const seen = clock.now();
    clock.advance(10 * SECOND);
    tracker.track("n1", "ready");
    assert.equal(tracker.lastSeen("n1"), seen);
    clock.advance(5 * SECOND + 1);
    assert.equal(tracker.sweep()[0]?.to, "suspect");
    // The caller's registry write failed and it re-syncs with what the registry holds.
    tracker.track("n1", "ready");
    assert.equal(tracker.status("n1"), "ready");
    tracker.track("n1", "suspect");
    clock.advance(30 * SECOND);
    assert.deepEqual(tracker.sweep(), []);
    clock.advance(1);
    assert.equal(tracker.sweep()[0]?.to, "down");
  });

  it("snapshots last-seen times as a copy", () => {
    const { clock, tracker } = makeTracker();
    tracker.track("a", "ready");
    clock.advance(2 * SECOND);
    tracker.track("b", "down");
    clock.advance(1 * SECOND);
    tracker.heartbeat("a");
    const snapshot = tracker.snapshotLastSeen();
    assert.deepEqual(
      [...snapshot],
      [
        ["a", clock.now()],
        ["b", clock.now() - 1 * SECOND],
      ],
    );
    snapshot.set("a", 0);
    assert.equal(tracker.lastSeen("a"), clock.now());
  });
});
