'use strict'

// `node --expose-gc bench/memory.js`: the heap a full health cache takes. 100k destinations,
// each an MX host with one IPv6 and one IPv4 address, every address and (MX host, family)
// recorded once: 400k entries with max_entries raised to fit. Heap and typed-array memory are
// measured after a full GC, before and after the fill, with the cache still alive.
//
//   --destinations N  (default 100000)
//   --module PATH     another build of lib/health.js to measure the same way (e.g. an older one)

const path = require('node:path')
const { parseArgs } = require('node:util')

const { values: args } = parseArgs({
  options: {
    destinations: { type: 'string', default: '100000' },
    module: { type: 'string', multiple: true, default: [] },
  },
})

if (typeof global.gc !== 'function') {
  console.error('run with node --expose-gc bench/memory.js')
  process.exit(2)
}

const DESTINATIONS = Number(args.destinations)

// Addresses and host names as they come from DNS: flat strings, not concatenations.
const flat = (s) => Buffer.from(s, 'latin1').toString('latin1')

// Typed arrays keep their contents outside the JS heap: both count.
function memoryAfterGc() {
  for (let i = 0; i < 3; i++) global.gc()
  const { heapUsed, arrayBuffers } = process.memoryUsage()
  return { heapUsed, arrayBuffers }
}

function fill(HealthCache) {
  const before = memoryAfterGc()
  const cache = new HealthCache({ ttlMs: 600_000, maxEntries: DESTINATIONS * 4 })
  const at = Date.now()
  for (let i = 0; i < DESTINATIONS; i++) {
    const exchange = flat(`mx${i}.destination-${i}.example`)
    const v6 = flat(`2001:db8:${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}::25`)
    const v4 = flat(`10.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`)
    // Each failure's text is made anew, as describeError makes it for every connect.
    const error = i % 2 ? flat('ETIMEDOUT') : flat(`no answer in ${250} ms`)
    cache.record(v6, 'ipv6', exchange, { ok: false, error, latencyMs: 250 + (i % 7), at: at + i })
    cache.record(v4, 'ipv4', exchange, { ok: true, latencyMs: 3 + (i % 5) / 10, at: at + i })
  }
  const after = memoryAfterGc()
  const entries = cache.size
  // Still alive here, so the GC above could not take it.
  if (!cache.addressFailed(flat('2001:db8:0:1::25'))) throw new Error('the cache lost an entry')
  return {
    entries,
    heap: after.heapUsed - before.heapUsed,
    buffers: after.arrayBuffers - before.arrayBuffers,
  }
}

const modules = [
  ...args.module.map((m) => path.resolve(m)),
  path.join(__dirname, '..', 'dist', 'lib', 'health.js'),
]
console.log(`node ${process.version}, ${DESTINATIONS} destinations (2 addresses + 2 families each)`)
for (const m of modules) {
  const { HealthCache } = require(m)
  const { entries, heap, buffers } = fill(HealthCache)
  const bytes = heap + buffers
  const mb = (n) => `${(n / 1e6).toFixed(1)} MB`
  console.log(
    `${path.relative(process.cwd(), m)}: ${entries} entries, ${mb(bytes)} ` +
      `(heap ${mb(heap)} + typed arrays ${mb(buffers)}), ` +
      `${Math.round(bytes / entries)} bytes an entry, ${Math.round(bytes / DESTINATIONS)} bytes a destination`,
  )
}
