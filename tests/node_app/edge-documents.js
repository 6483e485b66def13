'use strict';
// Prints opossum's toJSON() of breakers in the states the service test does not walk
// through, for tests/test_node_preset.py to map: real documents rather than hand-written ones.
const CircuitBreaker = require('opossum');

const succeed = async () => 'ok';

async function main() {
  const fresh = new CircuitBreaker(succeed, { name: 'fresh' });
  const disabled = new CircuitBreaker(succeed, { name: 'disabled' });
  disabled.open();
  disabled.disable(); // calls go through unprotected, whatever the state
  const shutdown = new CircuitBreaker(succeed, { name: 'shutdown' });
  shutdown.shutdown(); // every call is refused from now on
  const noPercentiles = new CircuitBreaker(succeed, {
    name: 'no-percentiles', rollingPercentilesEnabled: false,
  });
  await noPercentiles.fire();
  // A timeout the errorFilter forgives: opossum counts it as a timeout and a success.
  const forgiven = new CircuitBreaker(() => new Promise(() => {}), {
    name: 'forgiven', timeout: 10, errorFilter: (error) => error.code === 'ETIMEDOUT',
  });
  await forgiven.fire().catch(() => {});
  // capacity 1: a second concurrent call is refused, and opossum counts a failure for it too.
  let finish;
  const busy = new CircuitBreaker(() => new Promise((resolve) => { finish = resolve; }), {
    name: 'busy', capacity: 1,
  });
  const first = busy.fire();
  await busy.fire().catch(() => {});
  finish('ok');
  await first;
  // Calls that outlive the 1 s window: two hang until their 1.5 s timeout, one succeeds at
  // 1 s. When the timeouts land, the window holds one fire and two failures.
  const outlived = new CircuitBreaker((hang) => (hang ? new Promise(() => {}) : 'ok'), {
    name: 'outlived', timeout: 1500, rollingCountTimeout: 1000, volumeThreshold: 10,
  });
  const hanging = [outlived.fire(true), outlived.fire(true)];
  await new Promise((resolve) => setTimeout(resolve, 1000));
  await outlived.fire(false);
  await Promise.allSettled(hanging);
  const breakers = [fresh, disabled, shutdown, noPercentiles, forgiven, busy, outlived];
  process.stdout.write(JSON.stringify({ breakers: breakers.map((b) => b.toJSON()), pools: [] }));
}

main().then(() => process.exit(0), (error) => { console.error(error); process.exit(1); });
