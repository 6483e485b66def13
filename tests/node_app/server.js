'use strict';
// A Node.js service for tests/test_node_preset.py, built as applications are: a pg.Pool on
// PostgreSQL (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE from the environment), a
// generic-pool of workers, opossum breakers around a dependency the test can break, and the
// Express route of docs/application-health.md serving what they report. The other routes let
// the test hold pool resources and fire the breakers.
const express = require('express');
const genericPool = require('generic-pool');
const CircuitBreaker = require('opossum');
const pg = require('pg');
const { resilienceHealth } = require('./resilience-health');

const env = process.env;

const db = new pg.Pool({
  max: Number(env.ORDERS_POOL_MAX),
  idleTimeoutMillis: 0, // idle connections stay: the test counts them
  application_name: env.APPLICATION_NAME,
});
let workersCreated = 0;
const workers = genericPool.createPool(
  { create: async () => ({ id: ++workersCreated }), destroy: async () => {} },
  { max: Number(env.WORKERS_POOL_MAX), min: Number(env.WORKERS_POOL_MIN) },
);

async function callDependency() {
  const response = await fetch(env.DEPENDENCY_URL);
  if (!response.ok) throw new Error(`dependency answered HTTP ${response.status}`);
  return response.text();
}
const payments = new CircuitBreaker(callDependency, {
  name: 'payments',
  timeout: 2000,
  errorThresholdPercentage: 50,
  volumeThreshold: 5,
  resetTimeout: Number(env.PAYMENTS_RESET_TIMEOUT_MS),
  rollingCountTimeout: 600000, // the test's calls stay in the window until it ends
});
payments.fallback((error) => ({ fallback: error.code || error.message }));
const quick = new CircuitBreaker(async () => 'ok', {
  name: 'quick',
  rollingCountTimeout: Number(env.QUICK_WINDOW_MS),
});

const app = express();
const health = { breakers: [payments, quick], pgPools: { orders: db }, genericPools: { workers } };
app.get('/health/resilience', (req, res) => res.json(resilienceHealth(health)));

const breakers = { payments, quick };
app.post('/breakers/:name/fire', async (req, res) => {
  const breaker = breakers[req.params.name];
  const result = await breaker.fire();
  res.json({ result, state: breaker.toJSON().state });
});

const pools = {
  orders: { acquire: () => db.connect(), release: (client) => client.release() },
  workers: { acquire: () => workers.acquire(), release: (worker) => workers.release(worker) },
};
const held = { orders: [], workers: [] };
app.post('/pools/:name/hold', (req, res) => {
  const count = Number(req.query.count);
  for (let i = 0; i < count; i++) held[req.params.name].push(pools[req.params.name].acquire());
  res.json({ held: held[req.params.name].length });
});
app.post('/pools/:name/release', async (req, res) => {
  const { release } = pools[req.params.name];
  // Waiting acquisitions get their resource as the held ones come back, then go back too.
  await Promise.all(held[req.params.name].splice(0).map((acquired) => acquired.then(release)));
  res.json({ held: 0 });
});

app.listen(Number(env.PORT), '127.0.0.1', () => console.log(`listening on ${env.PORT}`));
process.on('SIGTERM', () => process.exit(0));
