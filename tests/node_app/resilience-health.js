// The document resilience-exporter's `preset: node` reads: each library's own numbers.
function resilienceHealth({ breakers = [], pgPools = {}, genericPools = {} }) {
  return {
    breakers: breakers.map((breaker) => breaker.toJSON()), // opossum CircuitBreakers
    pools: [
      ...Object.entries(pgPools).map(([name, pool]) => ({ // node-postgres pg.Pool
        name, totalCount: pool.totalCount, idleCount: pool.idleCount,
        waitingCount: pool.waitingCount, max: pool.options.max, min: pool.options.min,
      })),
      ...Object.entries(genericPools).map(([name, pool]) => ({ // generic-pool
        name, size: pool.size, available: pool.available, borrowed: pool.borrowed,
        pending: pool.pending, max: pool.max, min: pool.min,
      })),
    ],
  };
}

module.exports = { resilienceHealth };
