import assert from 'node:assert/strict'

import fc from 'fast-check'

import { fingerprint, OK, OutcomeTable, SLOW } from '../lib/outcome-table'

const key = (n: number) => fingerprint(1, `k${n}`)

describe('outcome-table', () => {
  it('behaves as a plain LRU map under any sequence of sets, gets and evictions', () => {
    // The model: a Map in recency order (a read or write moves the key to the end).
    const op = fc.oneof(
      fc.record({ kind: fc.constant('set' as const), k: fc.nat(40), v: fc.nat(1000) }),
      fc.record({ kind: fc.constant('get' as const), k: fc.nat(40) }),
    )
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }), fc.array(op, { maxLength: 300 }), (max, ops) => {
        const table = new OutcomeTable({ maxEntries: max, ttlMs: 1_000, now: () => 0 })
        const model = new Map<number, number>()
        for (const o of ops) {
          if (o.kind === 'set') {
            table.set(key(o.k), OK, o.v, o.v, undefined)
            model.delete(o.k)
            model.set(o.k, o.v)
            if (model.size > max) model.delete(model.keys().next().value as number)
          } else {
            const want = model.get(o.k)
            if (want !== undefined) {
              model.delete(o.k)
              model.set(o.k, want)
            }
            assert.equal(table.get(key(o.k))?.at, want)
          }
          assert.equal(table.size, model.size)
        }
        for (const [k, v] of model) assert.equal(table.get(key(k))?.at, v)
      }),
    )
  })

  it('keeps every entry up to the bound while growing its arrays', () => {
    const table = new OutcomeTable({ maxEntries: 5_000, ttlMs: 1_000, now: () => 0 })
    for (let i = 0; i < 5_000; i++) table.set(key(i), i % 2 ? OK : SLOW, i, i * 10, undefined)
    assert.equal(table.size, 5_000)
    for (let i = 0; i < 5_000; i++)
      assert.deepEqual(table.get(key(i)), {
        flags: i % 2 ? OK : SLOW,
        latencyMs: i,
        at: i * 10,
        error: undefined,
      })
    table.set(key(5_000), OK, 0, 0, undefined)
    assert.equal(table.size, 5_000)
    assert.equal(table.get(key(0)), undefined, 'the least recently used went first')
  })

  it('reads back every error text, beyond the number it interns too', () => {
    const table = new OutcomeTable({ maxEntries: 3_000, ttlMs: 1_000, now: () => 0 })
    for (let i = 0; i < 3_000; i++) table.set(key(i), 0, 1, 1, `no answer ${i}`)
    for (let i = 0; i < 3_000; i++) assert.equal(table.get(key(i))?.error, `no answer ${i}`)
    // A text past the bound is forgotten with its entry, and a new outcome replaces it.
    table.set(key(2_999), 0, 1, 1, undefined)
    assert.equal(table.get(key(2_999))?.error, undefined)
  })

  it('an entry is gone once now() is past its TTL, and an expired one is reused first', () => {
    let now = 0
    const table = new OutcomeTable({ maxEntries: 2, ttlMs: 100, now: () => now })
    table.set(key(1), OK, 1, 1, undefined)
    now = 50
    table.set(key(2), OK, 2, 2, undefined)
    now = 101
    // key 1 expired: a third key takes its place and key 2 stays.
    table.set(key(3), OK, 3, 3, undefined)
    assert.equal(table.size, 2)
    assert.equal(table.get(key(2))?.at, 2)
    assert.equal(table.get(key(1)), undefined)
    now = 151
    assert.equal(table.get(key(2)), undefined)
    assert.equal(table.size, 1)
  })

  it('clear forgets everything and the table works again afterwards', () => {
    const table = new OutcomeTable({ maxEntries: 10, ttlMs: 100, now: () => 0 })
    table.set(key(1), OK, 1, 1, 'ETIMEDOUT')
    table.clear()
    assert.equal(table.size, 0)
    assert.equal(table.get(key(1)), undefined)
    table.set(key(1), 0, 1, 1, 'ETIMEDOUT')
    assert.equal(table.get(key(1))?.error, 'ETIMEDOUT')
  })

  it('fingerprints tell apart tags, texts and cases, unless asked to ignore case', () => {
    assert.notDeepEqual(fingerprint(1, 'mx.example'), fingerprint(4, 'mx.example'))
    assert.notDeepEqual(fingerprint(1, 'mx.example'), fingerprint(1, 'mx.examplf'))
    assert.notDeepEqual(fingerprint(1, 'MX.example'), fingerprint(1, 'mx.example'))
    assert.deepEqual(fingerprint(1, 'MX.Example', true), fingerprint(1, 'mx.example', true))
  })
})
